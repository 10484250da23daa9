import os
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_sam.data import (DataError, detect_layout, find_records, load_mask, read_lesions,
                            write_busi_phantoms)


def test_busi_phantoms_have_the_real_sets_quirks(phantom_dir):
    records = find_records(phantom_dir)
    assert {r.label for r in records} == {"benign", "malignant", "normal"}
    assert any(" (" in os.path.basename(r.image_path) for r in records)
    modes = {Image.open(m).mode for r in records for m in r.mask_paths}
    assert {"1", "L", "RGB", "RGBA"} <= modes
    sizes = {Image.open(r.image_path).size for r in records}
    assert len(sizes) > len(records) // 2
    two = [r for r in records if len(r.mask_paths) == 2]
    assert two and all(p.endswith("_mask_1.png") for r in two for p in r.mask_paths[1:])


def test_each_lesion_is_its_own_sample_and_normal_images_are_counted(phantom_dir):
    lesion_set = read_lesions(find_records(phantom_dir))
    two = [r for r in find_records(phantom_dir) if len(r.mask_paths) == 2][0]
    mine = [l for l in lesion_set.lesions if l.image_path == two.image_path]
    assert len(mine) == 2 and mine[0].box != mine[1].box
    for lesion in mine:  # each box is tight around its own mask file only
        mask = load_mask(lesion.mask_path)
        rows, cols = np.nonzero(mask)
        assert lesion.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    counts = lesion_set.counts()["per_class"]
    assert counts["normal"] == {"images": 0, "lesions": 0, "empty_mask_images_left_out": 3}
    records = find_records(phantom_dir)
    for label in ("benign", "malignant"):  # one lesion per mask file, every mask file non-empty
        mine = [r for r in records if r.label == label]
        assert counts[label] == {"images": len(mine), "lesions": sum(len(r.mask_paths) for r in mine),
                                 "empty_mask_images_left_out": 0}
    assert counts["benign"]["lesions"] > counts["benign"]["images"]  # a two-lesion image is benign


def test_masks_in_every_format_read_as_the_same_boolean_mask(tmp_path):
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    Image.fromarray(mask).convert("1").save(tmp_path / "bit.png")
    Image.fromarray(mask.astype(np.uint8)).save(tmp_path / "zero_one.png")
    grey = mask.astype(np.uint8) * 255
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)], -1)).save(tmp_path / "rgba.png")
    for name in ("bit", "zero_one", "rgb", "rgba"):
        np.testing.assert_array_equal(load_mask(tmp_path / f"{name}.png", (5, 7)), mask)


def test_keras_io_layout_pairs_by_stem_not_by_sorted_position(tmp_path):
    for folder in ("images", "labels"):
        os.makedirs(tmp_path / folder)
    for stem, size in (("a", (8, 8)), ("b", (10, 6))):
        Image.fromarray(np.zeros(size + (3,), np.uint8)).save(tmp_path / "images" / f"{stem}.png")
    # Labels sort in the other order than images: pairing by position would swap them.
    Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "labels" / "a.png")
    Image.fromarray(np.ones((10, 6), np.uint8)).save(tmp_path / "labels" / "b.png")
    os.rename(tmp_path / "labels" / "a.png", tmp_path / "labels" / "a.PNG")
    assert detect_layout(tmp_path) == "images-labels"
    records = find_records(tmp_path)
    assert [(os.path.basename(r.image_path), os.path.basename(r.mask_paths[0])) for r in records] == [
        ("a.png", "a.PNG"), ("b.png", "b.png")]
    assert len(read_lesions(records).lesions) == 2


def test_generic_folders_with_a_mask_suffix(tmp_path):
    os.makedirs(tmp_path / "images")
    os.makedirs(tmp_path / "masks")
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(tmp_path / "images" / "case 1.png")
    Image.fromarray(np.eye(6, dtype=np.uint8)).save(tmp_path / "masks" / "case 1_mask.png")
    assert detect_layout(tmp_path) == "folders"
    records = find_records(tmp_path, mask_suffix="_mask")
    assert records[0].mask_paths[0].endswith("case 1_mask.png")


def broken_copy(phantom_dir, tmp_path, damage):
    root = tmp_path / "data"
    shutil.copytree(phantom_dir, root)
    target = damage(root)
    return str(root), str(target)


def _undecodable(root):
    path = root / "benign" / "benign (2).png"
    path.write_bytes(b"this is not a png")
    return path


def _zero_bytes(root):
    path = root / "malignant" / "malignant (1)_mask.png"
    path.write_bytes(b"")
    return path


def _wrong_size(root):
    path = root / "benign" / "benign (3)_mask.png"
    Image.fromarray(np.zeros((11, 13), np.uint8)).save(path)
    return path


def _no_mask(root):
    path = root / "benign" / "benign (4)_mask.png"
    os.remove(path)
    return root / "benign" / "benign (4).png"


def _three_values(root):
    path = root / "benign" / "benign (5)_mask.png"
    size = Image.open(root / "benign" / "benign (5).png").size
    values = np.zeros(size[::-1], np.uint8)
    values[:3] = 128
    values[3:6] = 255
    Image.fromarray(values).save(path)
    return path


@pytest.mark.parametrize(
    "damage, message",
    [
        (_undecodable, "cannot be decoded as an image"),
        (_zero_bytes, r"is empty \(0 bytes\)"),
        (_wrong_size, "is 13x11 but its image is"),
        (_three_values, "masks must be binary; .* has values 0, 128, 255"),
    ],
)
def test_bad_files_name_the_file_or_are_skipped_and_counted(phantom_dir, tmp_path, damage, message):
    root, target = broken_copy(phantom_dir, tmp_path, damage)
    records = find_records(root)
    with pytest.raises(DataError, match=message) as raised:
        read_lesions(records)
    assert target in str(raised.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lesion_set = read_lesions(records, on_error="skip")
    assert len(lesion_set.skipped) == 1 and lesion_set.counts()["skipped_files"] == 1
    assert any(target in str(w.message) for w in caught)
    assert all(target not in (l.image_path, l.mask_path) for l in lesion_set.lesions)


def test_an_image_without_a_mask_is_named(phantom_dir, tmp_path):
    root, target = broken_copy(phantom_dir, tmp_path, _no_mask)
    with pytest.raises(DataError, match=r"benign \(4\).png has no mask \(expected benign \(4\)_mask.png"):
        find_records(root)


def test_empty_and_unrecognised_folders(tmp_path):
    os.makedirs(tmp_path / "benign")
    with pytest.raises(DataError, match="holds no images"):
        find_records(tmp_path)
    other = tmp_path / "other"
    os.makedirs(other / "pictures")
    with pytest.raises(DataError, match="no known layout in .*other: looked for class folders"):
        find_records(other)
    with pytest.raises(DataError, match="does not exist"):
        find_records(tmp_path / "missing")


def test_phantoms_are_deterministic_by_seed(tmp_path):
    a = write_busi_phantoms(str(tmp_path / "a"), counts={"benign": 2, "normal": 1}, seed=5)
    b = write_busi_phantoms(str(tmp_path / "b"), counts={"benign": 2, "normal": 1}, seed=5)
    c = write_busi_phantoms(str(tmp_path / "c"), counts={"benign": 2, "normal": 1}, seed=6)
    name = os.path.join("benign", "benign (1).png")
    read = lambda root: np.asarray(Image.open(os.path.join(root, name)))
    np.testing.assert_array_equal(read(a), read(b))
    assert read(a).shape != read(c).shape or not np.array_equal(read(a), read(c))
