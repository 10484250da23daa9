import json

import pytest

from keras_sam.data import Lesion, apply_manifest, find_records, read_lesions, split_lesions, write_manifest


def fake_lesions(counts):
    lesions = []
    for label, count in counts.items():
        for i in range(count):
            key = f"{label}-{i}"
            lesions.append(Lesion(f"/d/{label} ({i}).png", f"/d/{label} ({i})_mask.png", label,
                                  key, (10, 10), (0, 0, 1, 1)))
    return lesions


def test_split_is_deterministic_and_stratified():
    lesions = fake_lesions({"benign": 20, "malignant": 10, "tiny": 3})
    first, warnings = split_lesions(lesions, val=0.2, test=0.2, seed=7)
    again, _ = split_lesions(lesions, val=0.2, test=0.2, seed=7)
    other, _ = split_lesions(lesions, val=0.2, test=0.2, seed=8)
    assert first == again
    assert first != other
    assert not warnings
    for name in ("train", "val", "test"):
        assert {l.label for l in first[name]} == {"benign", "malignant", "tiny"}
    assert len(first["test"]) == 4 + 2 + 1 and len(first["train"]) == 12 + 6 + 1


def test_identical_images_stay_in_one_split(phantom_dir):
    lesion_set = read_lesions(find_records(phantom_dir))
    keys = {}
    for lesion in lesion_set.lesions:
        keys.setdefault(lesion.image_key, set()).add(lesion.image_path)
    duplicated = [paths for paths in keys.values() if len(paths) > 1]
    assert duplicated, "the phantoms include a duplicated image"
    for seed in range(5):
        splits, _ = split_lesions(lesion_set.lesions, seed=seed)
        where = {l.image_path: name for name, ls in splits.items() for l in ls}
        for paths in duplicated:
            assert len({where[p] for p in paths}) == 1


def test_small_classes_are_reported():
    _, warnings = split_lesions(fake_lesions({"benign": 10, "rare": 2}), val=0.2, test=0.2)
    assert warnings == ["class 'rare' has only 2 distinct lesion image(s): not every split gets one"]


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (-0.1, 0.2), (0.7, 0.4)])
def test_bad_ratios(val, test):
    with pytest.raises(ValueError, match=f"val={val}, test={test}"):
        split_lesions(fake_lesions({"a": 5}), val=val, test=test)


def test_manifest_recreates_the_split(tmp_path):
    lesions = fake_lesions({"benign": 9, "malignant": 6})
    splits, warnings = split_lesions(lesions, seed=3)
    path = tmp_path / "split.json"
    write_manifest(path, splits, "/d", 3, 0.15, 0.15, warnings)
    manifest = json.loads(path.read_text())
    assert manifest["splits"]["test"][0].endswith(").png") and not manifest["splits"]["test"][0].startswith("/")
    recreated = apply_manifest(manifest, lesions, "/d")
    assert {k: set(v) for k, v in recreated.items()} == {k: set(v) for k, v in splits.items()}
