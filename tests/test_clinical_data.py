"""DICOM and NIfTI folders: layouts, intensities, spacing, grouping, and one-line errors per bad file."""

import os
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")

from keras_sam.data import (DataError, detect_layout, find_records, load_image, load_mask,  # noqa: E402
                            read_lesions, split_lesions)
from keras_sam.data import readers  # noqa: E402
from keras_sam.data.clinical_phantoms import (dicom_dataset, nifti_affine, write_dicom_phantoms,  # noqa: E402
                                              write_nifti_phantoms)
from keras_sam.data.dicom import read_dicom  # noqa: E402
from keras_sam.data.splits import group_keys  # noqa: E402


@pytest.fixture(scope="module")
def dicom_dir(tmp_path_factory):
    return write_dicom_phantoms(str(tmp_path_factory.mktemp("dicom") / "study"), singles=6, cines=3,
                                frames=4, seed=1)


@pytest.fixture(scope="module")
def nifti_dir(tmp_path_factory):
    return write_nifti_phantoms(str(tmp_path_factory.mktemp("nifti") / "task"), volumes=4, slices=6, seed=2)


def save_dicom(path, pixels, **kwargs):
    multi = kwargs.pop("multi_frame", np.ndim(pixels) == 3)
    dicom_dataset(np.asarray(pixels), multi_frame=multi, **kwargs).save_as(str(path), enforce_file_format=True)


def make_folder(root, image_dir="images", mask_dir="masks"):
    for name in (image_dir, mask_dir):
        os.makedirs(os.path.join(root, name), exist_ok=True)
    return root


def blob(shape=(40, 50)):
    mask = np.zeros(shape, bool)
    mask[10:25, 15:35] = True
    return mask


def only_line(text):
    lines = [line for line in str(text).splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# Layouts -------------------------------------------------------------------------------------

def test_dicom_study_gives_one_sample_per_masked_frame_with_its_spacing(dicom_dir):
    assert detect_layout(dicom_dir) == "dicom"
    found = read_lesions(find_records(dicom_dir), progress=False)
    # 6 single frames, and 3 cines of 4 frames whose last frame has no lesion.
    assert len(found.lesions) == 6 + 3 * 3
    assert len(found.empty) == 3
    assert {lesion.spacing for lesion in found.lesions} == {(0.25, 0.2)}
    cine = [lesion for lesion in found.lesions if "cine_001" in lesion.image_path]
    assert [lesion.image_path.rsplit("#", 1)[1] for lesion in cine] == ["frame=0", "frame=1", "frame=2"]
    assert {lesion.group for lesion in cine} == {os.path.join(dicom_dir, "images", "cine_001.dcm")}
    # A frame reads like any image, and its mask lines up with the stored one (drifting 2 px a frame).
    image = load_image(cine[2].image_path)
    assert image.shape == (240, 300, 3) and image.dtype == np.uint8
    first, third = load_mask(cine[0].mask_path, (240, 300)), load_mask(cine[2].mask_path, (240, 300))
    np.testing.assert_array_equal(np.roll(first, 4, axis=1), third)


def test_nifti_volumes_give_one_sample_per_slice_with_a_lesion(nifti_dir):
    assert detect_layout(nifti_dir) == "nifti"
    records = find_records(nifti_dir)
    assert len(records) == 4 and records[0].mask_paths[0].endswith(os.path.join("labelsTr", "case_000.nii.gz"))
    found = read_lesions(records, progress=False)
    volume = nibabel.load(records[0].mask_paths[0]).get_fdata()
    with_lesion = [k for k in range(volume.shape[2]) if volume[:, :, k].any()]
    mine = [lesion for lesion in found.lesions if lesion.group == records[0].image_path]
    assert [int(lesion.image_path.rsplit("=", 1)[1]) for lesion in mine] == with_lesion
    assert {lesion.spacing for lesion in found.lesions} == {(0.8, 0.6)}
    k = with_lesion[0]
    np.testing.assert_array_equal(load_mask(mine[0].mask_path, mine[0].image_size), volume[:, :, k] > 0)
    # Slices are scaled per volume, from its 0.5th to its 99.5th percentile.
    data = nibabel.load(records[0].image_path).get_fdata()
    low, high = np.percentile(data, [0.5, 99.5])
    expected = np.clip(np.rint((data[:, :, k] - low) / (high - low) * 255), 0, 255)
    np.testing.assert_array_equal(load_image(mine[0].image_path)[..., 0], expected)


def test_frames_of_one_file_stay_in_one_split(dicom_dir, nifti_dir):
    for root in (dicom_dir, nifti_dir):
        lesions = read_lesions(find_records(root), progress=False).lesions
        assert len(set(group_keys(lesions))) == len({lesion.group for lesion in lesions})
        splits, _ = split_lesions(lesions, val=0.25, test=0.25, seed=3)
        where = {}
        for name, chosen in splits.items():
            for lesion in chosen:
                assert where.setdefault(lesion.group, name) == name, lesion.image_path
        assert all(splits[name] for name in ("train", "val", "test"))


def test_several_labels_in_a_mask_volume_are_lesions_of_their_own_class(tmp_path):
    root = make_folder(str(tmp_path / "labels"), "imagesTr", "labelsTr")
    data = np.random.default_rng(0).normal(size=(40, 50, 3))
    labels = np.zeros((40, 50, 3), np.uint8)
    labels[5:15, 5:15, 1] = 1
    labels[20:30, 30:45, 1] = 2
    labels[20:30, 30:45, 2] = 2
    nibabel.save(nibabel.Nifti1Image(data, nifti_affine((1, 1, 2))), f"{root}/imagesTr/a_0000.nii.gz")
    nibabel.save(nibabel.Nifti1Image(labels, nifti_affine((1, 1, 2))), f"{root}/labelsTr/a.nii.gz")
    found = read_lesions(find_records(root), progress=False)
    assert sorted((lesion.label, lesion.image_path[-7:]) for lesion in found.lesions) == [
        ("label 1", "slice=1"), ("label 2", "slice=1"), ("label 2", "slice=2")]
    assert len(found.empty) == 1  # slice 0


def test_archive_files_without_extension_and_a_multi_frame_dicom_mask(tmp_path):
    # PACS exports name files IM0001 with no extension; a cine's mask may be a multi-frame DICOM.
    root = make_folder(str(tmp_path / "export"))
    frames = np.stack([np.full((40, 50), 60 + 40 * k, np.uint8) for k in range(3)])
    masks = np.stack([blob(), np.zeros((40, 50), bool), np.roll(blob(), 3, axis=0)]).astype(np.uint8)
    save_dicom(os.path.join(root, "images", "IM0001"), frames, spacing=(0.3, 0.3))
    save_dicom(os.path.join(root, "masks", "IM0001.dcm"), masks, spacing=(0.3, 0.3))
    assert detect_layout(root) == "dicom"
    found = read_lesions(find_records(root), progress=False)
    assert [lesion.image_path[-7:] for lesion in found.lesions] == ["frame=0", "frame=2"]
    assert load_image(found.lesions[1].image_path)[0, 0, 0] == 255  # the brightest of the three frames
    np.testing.assert_array_equal(load_mask(found.lesions[1].mask_path, (40, 50)), np.roll(blob(), 3, axis=0))


def test_colour_dicom_keeps_its_rgb_values(tmp_path):
    dataset = dicom_dataset(np.zeros((4, 4), np.uint8))
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0], rgb[1, 1] = 200, (10, 20, 30)
    dataset.set_pixel_data(rgb, photometric_interpretation="RGB", bits_stored=8)
    dataset.save_as(str(tmp_path / "doppler.dcm"), enforce_file_format=True)
    frames = read_dicom(str(tmp_path / "doppler.dcm")).frames
    assert frames.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(frames[0], rgb)


def test_palette_colour_dicom_goes_through_its_lookup_table(tmp_path):
    dataset = dicom_dataset(np.array([[0, 1], [2, 1]], np.uint8))
    dataset.PhotometricInterpretation = "PALETTE COLOR"
    table = np.array([0, 255, 128], np.uint16) * 257  # 16-bit entries
    for colour, entries in zip(("Red", "Green", "Blue"), (table, table[::-1], table)):
        setattr(dataset, f"{colour}PaletteColorLookupTableDescriptor", [3, 0, 16])
        setattr(dataset, f"{colour}PaletteColorLookupTableData", entries.tobytes())
    dataset.save_as(str(tmp_path / "palette.dcm"), enforce_file_format=True)
    np.testing.assert_array_equal(read_dicom(str(tmp_path / "palette.dcm")).frames[0],
                                  [[[0, 128, 0], [255, 255, 255]], [[128, 0, 128], [255, 255, 255]]])


# Intensities and spacing ---------------------------------------------------------------------

def test_dicom_rescale_then_window(tmp_path):
    # Stored 0, 1000, 2000, 3000 with intercept -1024: -1024, -24, 976, 1976 HU. Window 40/400
    # (DICOM's linear function): below -160 is black, above 239 white, -24 is grey 87.
    pixels = np.array([[0, 1000, 2000, 3000]], np.uint16)
    save_dicom(tmp_path / "ct.dcm", pixels, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40,
               WindowWidth=400)
    np.testing.assert_array_equal(read_dicom(str(tmp_path / "ct.dcm")).frames[0, ..., 0], [[0, 87, 255, 255]])


def test_dicom_without_window_shares_one_scale_over_a_cine_and_inverts_monochrome1(tmp_path):
    frames = np.array([[[0, 100]], [[0, 200]]], np.uint16)
    save_dicom(tmp_path / "cine.dcm", frames)
    np.testing.assert_array_equal(read_dicom(str(tmp_path / "cine.dcm")).frames[..., 0], [[[0, 128]], [[0, 255]]])
    save_dicom(tmp_path / "inverted.dcm", frames[1], PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_array_equal(read_dicom(str(tmp_path / "inverted.dcm")).frames[0, ..., 0], [[255, 0]])


def test_ultrasound_region_spacing_in_cm_becomes_mm(tmp_path):
    from pydicom.dataset import Dataset

    region = Dataset()
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3
    region.PhysicalDeltaX, region.PhysicalDeltaY = 0.01, 0.02
    save_dicom(tmp_path / "us.dcm", np.zeros((4, 4), np.uint8), spacing=None,
               SequenceOfUltrasoundRegions=[region])
    assert read_dicom(str(tmp_path / "us.dcm")).spacing == pytest.approx((0.2, 0.1))


# Errors: one line naming the file, and --skip-bad-files --------------------------------------

def single_dicom_folder(root, mask_shape=(40, 50), **kwargs):
    make_folder(root)
    save_dicom(os.path.join(root, "images", "a.dcm"), np.full((40, 50), 90, np.uint8), **kwargs)
    Image.fromarray(blob(mask_shape).astype(np.uint8) * 255).save(os.path.join(root, "masks", "a.png"))
    return root


def write_no_pixel_data(root):
    dataset = dicom_dataset(np.zeros((4, 4), np.uint8))
    del dataset.PixelData
    dataset.save_as(os.path.join(root, "images", "a.dcm"), enforce_file_format=True)


def write_jpeg_ls_without_decoder(root):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    dataset = dicom_dataset(np.zeros((40, 50), np.uint8))
    dataset.file_meta.TransferSyntaxUID = JPEGLSLossless
    dataset.PixelData = encapsulate([b"\xff\xd8 not really JPEG-LS \xff\xd9"])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(os.path.join(root, "images", "a.dcm"), enforce_file_format=True)


def nifti_pair(root, mask_shape=(40, 50, 3), mask_affine=None, spacing=(0.5, 0.5, 2.0)):
    make_folder(root)
    labels = np.zeros(mask_shape, np.uint8)
    labels[10:20, 10:20, 1] = 1
    nibabel.save(nibabel.Nifti1Image(np.random.default_rng(0).normal(size=(40, 50, 3)),
                                     nifti_affine(spacing)), os.path.join(root, "images", "v.nii.gz"))
    nibabel.save(nibabel.Nifti1Image(labels, nifti_affine(spacing) if mask_affine is None else mask_affine),
                 os.path.join(root, "masks", "v.nii.gz"))


def shifted_affine(spacing, shift_mm):
    affine = nifti_affine(spacing)
    affine[0, 3] = shift_mm  # the same voxels, 5 mm elsewhere: another space
    return affine


BAD_INPUTS = {
    "no pixel data": (lambda root: (single_dicom_folder(root), write_no_pixel_data(root)),
                      "a.dcm has no pixel data", {}),
    "compressed without decoder": (lambda root: (single_dicom_folder(root), write_jpeg_ls_without_decoder(root)),
                                   r"a.dcm is compressed \(JPEG-LS.*pip install pyjpegls", {}),
    "mask shape differs": (lambda root: single_dicom_folder(root, mask_shape=(30, 50)),
                           r"masks/a.png holds 1 mask\(s\) of 30x50 but its image .*a.dcm has 1 frame\(s\) of 40x50", {}),
    "mask volume shape differs": (lambda root: nifti_pair(root, mask_shape=(40, 50, 4)),
                                  r"masks/v.nii.gz has shape \(40, 50, 4\) but its image", {}),
    "affine differs": (lambda root: nifti_pair(root, mask_affine=shifted_affine((0.5, 0.5, 2.0), 5.0)),
                       "masks/v.nii.gz has an affine that differs from its image", {}),
    "zero spacing where mm asked": (lambda root: single_dicom_folder(root, spacing=(0.0, 0.0)),
                                    "a.dcm: PixelSpacing is .*--units mm", {"require_spacing": True}),
    "missing spacing where mm asked": (lambda root: single_dicom_folder(root, spacing=None),
                                       "a.dcm states no pixel spacing and --units mm", {"require_spacing": True}),
    "png where mm asked": (lambda root: (make_folder(root),
                                         Image.fromarray(np.zeros((8, 8), np.uint8)).save(f"{root}/images/a.png"),
                                         Image.fromarray(blob((8, 8)).astype(np.uint8)).save(f"{root}/masks/a.png")),
                           "a.png carries no pixel spacing", {"require_spacing": True}),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_each_bad_input_is_one_line_naming_the_file_and_can_be_skipped(tmp_path, case):
    write, message, options = BAD_INPUTS[case]
    root = str(tmp_path / "data")
    write(root)
    with pytest.raises(DataError, match=message) as caught:
        read_lesions(find_records(root), progress=False, **options)
    only_line(caught.value)
    with pytest.warns(UserWarning, match="skipped"):
        skipped = read_lesions(find_records(root), on_error="skip", progress=False, **options)
    assert skipped.lesions == [] and len(skipped.skipped) == 1


def test_a_transposed_cine_mask_is_named_as_such(tmp_path):
    root = make_folder(str(tmp_path / "data"))
    save_dicom(os.path.join(root, "images", "cine.dcm"), np.zeros((3, 40, 50), np.uint8))
    masks = np.zeros((50, 40, 3), np.uint8)  # (columns, rows, frames): saved the other way round
    masks[5:10, 5:10] = 1
    nibabel.save(nibabel.Nifti1Image(masks, np.eye(4)), os.path.join(root, "masks", "cine.nii.gz"))
    with pytest.raises(DataError, match=r"cine.nii.gz holds 3 mask\(s\) of 50x40 .*looks transposed"):
        read_lesions(find_records(root), progress=False)


def test_zero_spacing_without_mm_falls_back_to_pixels_with_a_warning(tmp_path):
    root = single_dicom_folder(str(tmp_path / "data"), spacing=(0.0, 0.3))
    with pytest.warns(UserWarning, match="PixelSpacing is .*in pixels"):
        found = read_lesions(find_records(root), progress=False)
    assert [lesion.spacing for lesion in found.lesions] == [None]


def test_dicom_seg_is_named_as_unsupported(tmp_path):
    root = make_folder(str(tmp_path / "data"))
    save_dicom(os.path.join(root, "images", "a.dcm"), np.zeros((40, 50), np.uint8))
    save_dicom(os.path.join(root, "masks", "a.dcm"), blob().astype(np.uint8),
               SOPClassUID="1.2.840.10008.5.1.4.1.1.66.4")
    with pytest.raises(DataError, match="masks/a.dcm is a DICOM SEG object"):
        read_lesions(find_records(root), progress=False)


# Folders as handed over ----------------------------------------------------------------------

def test_jpeg_smeared_masks_are_thresholded_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_smeared_warned", [])
    rows, cols = np.indices((64, 80))
    mask = np.where(np.hypot((rows - 30) / 20, (cols - 41) / 27) <= 1, 255, 0).astype(np.uint8)
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(mask).save(tmp_path / name, quality=75)
    smeared = np.asarray(Image.open(tmp_path / "a.jpg"))
    assert len(np.unique(smeared)) > 2  # the compression did smear it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = load_mask(str(tmp_path / "a.jpg"))
        load_mask(str(tmp_path / "b.jpg"))
    assert len([w for w in caught if "smeared" in str(w.message)]) == 1
    assert (first != (mask > 0)).sum() <= 10  # the threshold recovers the drawn mask but for a few edge pixels


@pytest.mark.parametrize("values", [(0, 1, 2), (0, 128, 255)])
def test_masks_with_several_labels_are_still_refused(tmp_path, values):
    mask = np.zeros((30, 30), np.uint8)
    mask[5:15, 5:15], mask[18:28, 18:28] = values[1], values[2]
    Image.fromarray(mask).save(tmp_path / "m.png")
    with pytest.raises(DataError, match="m.png has values .*several labels"):
        load_mask(str(tmp_path / "m.png"))


def test_a_folder_one_level_up_names_the_data_set(tmp_path, phantom_dir):
    parent = tmp_path / "download"
    parent.mkdir()
    shutil.copytree(phantom_dir, parent / "Dataset_BUSI_with_GT")
    (parent / "notes").mkdir()
    with pytest.raises(DataError, match=r"Did you mean .*download/Dataset_BUSI_with_GT\?$"):
        find_records(str(parent))
