"""Files that hold several pictures (DICOM cine loops, NIfTI volumes): their folder layouts, one
address per frame, and their expansion into lesions.

A frame or slice is addressed like a file, so everything that reads images by path (the pipeline,
the embedding cache, the report) reads it unchanged:

    images/cine.dcm#frame=3        frame 3 of a multi-frame DICOM (a single-frame one is its path)
    images/ct_007.nii.gz#slice=41  slice 41 of a NIfTI volume, i.e. data[:, :, 41]
    labels/ct_007.nii.gz#slice=41&label=2   voxels labelled 2 in that slice of a mask volume

Layouts:
- "dicom": `images/` holding DICOM files (.dcm, .dicom) and `masks/` (or `labels/`) holding a mask
  per image with the same stem: an image file (PNG, ...) for a single frame, or a NIfTI volume or
  DICOM file with one mask per frame (a NIfTI mask of a cine of F frames of HxW is (H, W, F)).
- "nifti": `images/` with `masks/` or `labels/`, or the Medical Segmentation Decathlon and nnU-Net's
  `imagesTr/` with `labelsTr/`; NIfTI files paired by stem (nnU-Net's channel suffix `_0000` on
  images is ignored).

Every frame or slice with a lesion is a sample; all samples of one file share its `group`, so a
split keeps them together (they are near-duplicates of each other).
"""

import functools
import os
import re
import warnings

import numpy as np

from keras_sam.data.dicom import is_dicom, read_dicom, read_dicom_mask
from keras_sam.data.errors import DataError
from keras_sam.data.nifti import check_same_grid, grid_of, is_nifti, nifti_stem, read_nifti, to_uint8

VOLUME_LAYOUTS = ("dicom", "nifti")
MASK_FOLDERS = ("masks", "labels")
NIFTI_FOLDER_PAIRS = (("images", "masks"), ("images", "labels"), ("imagesTr", "labelsTr"))
_ADDRESS = re.compile(r"^(?P<file>.+)#(?P<kind>frame|slice)=(?P<index>\d+)(?:&label=(?P<label>\d+))?$")
_NNUNET_CHANNEL = re.compile(r"_\d{4}$")


def is_volume_file(path):
    """True for a DICOM or NIfTI file name, or a frame address within one."""
    return is_dicom(split_address(path)[0]) or is_nifti(split_address(path)[0])


def frame_address(path, index, label=None):
    """The address of frame/slice `index` of `path` (and of one label of a mask volume)."""
    kind = "slice" if is_nifti(path) else "frame"
    return f"{path}#{kind}={index}" + ("" if label is None else f"&label={label}")


def split_address(address):
    """'x.nii.gz#slice=4&label=2' -> ('x.nii.gz', 4, 2); a plain path -> (path, None, None)."""
    match = _ADDRESS.match(os.fspath(address))
    if not match:
        return os.fspath(address), None, None
    label = match["label"]
    return match["file"], int(match["index"]), None if label is None else int(label)


def _stamp(path):
    try:
        status = os.stat(path)
    except OSError as error:
        raise DataError(f"{path} cannot be read ({error.strerror})") from error
    return status.st_mtime_ns, status.st_size


# The last two files of each kind stay decoded: the pipeline asks for their frames one at a time,
# and a CT volume decoded takes a few hundred MB.
@functools.lru_cache(maxsize=2)
def _image_stack(path, stamp):
    """(F, H, W[, 3]) uint8 frames, spacing, spacing problem, and the NIfTI grid (None for DICOM)."""
    del stamp  # part of the cache key only: a rewritten file is read again
    if is_nifti(path):
        volume = read_nifti(path)
        return (np.moveaxis(to_uint8(volume.data), -1, 0), volume.spacing, volume.spacing_problem,
                grid_of(volume))
    dicom = read_dicom(path)
    return dicom.frames, dicom.spacing, dicom.spacing_problem, None


@functools.lru_cache(maxsize=2)
def _mask_stack(path, stamp):
    """(F, H, W) integer mask values of a mask file, and its NIfTI grid (None for other formats)."""
    del stamp
    if is_nifti(path):
        volume = read_nifti(path)
        return np.moveaxis(np.asarray(volume.data), -1, 0), grid_of(volume)
    if is_dicom(path):
        return read_dicom_mask(path), None
    from keras_sam.data.readers import load_mask

    return load_mask(path)[None].astype(np.uint8), None


def image_stack(path):
    """All frames of a DICOM or NIfTI file as (F, H, W, 3) uint8 RGB, its spacing and any problem
    with it: (frames, spacing, spacing_problem)."""
    frames, spacing, problem, _ = _image_stack(path, _stamp(path))
    return _rgb(frames), spacing, problem


def _rgb(frames):
    return frames if frames.ndim == 4 else np.repeat(frames[..., None], 3, axis=-1)


def load_frame(address):
    """One frame or slice (or a single-frame DICOM) as an (H, W, 3) uint8 RGB array."""
    path, index, _ = split_address(address)
    frames = _image_stack(path, _stamp(path))[0]
    if index is None:
        if len(frames) != 1:
            raise DataError(f"{path} has {len(frames)} frames; address one as {path}#frame=N")
        index = 0
    if index >= len(frames):
        raise DataError(f"{address}: {path} has only {len(frames)} frames")
    return _rgb(frames[index:index + 1])[0]


def load_frame_mask(address, image_size=None):
    """One frame's mask from a mask file, as (H, W) bool: nonzero, or equal to the address's label."""
    path, index, label = split_address(address)
    stack = _mask_stack(path, _stamp(path))[0]
    index = 0 if index is None else index
    if index >= len(stack):
        raise DataError(f"{address}: {path} has only {len(stack)} frames")
    values = stack[index]
    mask = values != 0 if label is None else values == label
    if image_size is not None and mask.shape != tuple(image_size):
        raise DataError(f"{path} has masks of {mask.shape[0]}x{mask.shape[1]} (rows x columns) but its "
                        f"image is {image_size[0]}x{image_size[1]}")
    return mask


def detect_volume_layout(root):
    """"dicom" or "nifti" if `root`'s image folder holds such files, else None."""
    for image_dir in ("images", "imagesTr"):
        folder = os.path.join(root, image_dir)
        if not os.path.isdir(folder):
            continue
        names = [name for name in os.listdir(folder) if not name.startswith(".")]
        if image_dir == "images" and any(is_dicom(os.path.join(folder, name)) for name in names):
            return "dicom"
        if any(is_nifti(name) for name in names):
            return "nifti"
    return None


def volume_records(root, layout, mask_suffix, record_type):
    """The records (one per file) of a "dicom" or "nifti" folder; see the module notes."""
    if layout == "dicom":
        pairs, wanted = [("images", folder) for folder in MASK_FOLDERS], is_dicom
    else:
        pairs, wanted = NIFTI_FOLDER_PAIRS, is_nifti
    found = [(i, m) for i, m in pairs if os.path.isdir(os.path.join(root, i)) and os.path.isdir(os.path.join(root, m))]
    if not found:
        raise DataError(f"{root} has no " + " or ".join(f"{i}/ with {m}/" for i, m in pairs)
                        + f" (layout {layout})")
    records = []
    for image_dir, mask_dir in found:
        image_folder, mask_folder = os.path.join(root, image_dir), os.path.join(root, mask_dir)
        masks = {}
        for name in sorted(os.listdir(mask_folder)):
            if name.startswith("."):
                continue
            stem = nifti_stem(name) if is_nifti(name) else os.path.splitext(name)[0]
            if mask_suffix and stem.endswith(mask_suffix):
                stem = stem[: -len(mask_suffix)]
            masks.setdefault(stem, os.path.join(mask_folder, name))
        for name in sorted(os.listdir(image_folder)):
            if name.startswith(".") or not wanted(os.path.join(image_folder, name)):
                continue
            stem = nifti_stem(name) if layout == "nifti" else os.path.splitext(name)[0]
            mask = masks.get(stem) or masks.get(_NNUNET_CHANNEL.sub("", stem))
            if mask is None:
                raise DataError(f"{os.path.join(image_folder, name)} has no mask: no {stem}{mask_suffix}.* "
                                f"in {mask_folder}")
            records.append(record_type(os.path.join(image_folder, name), (mask,), "lesion"))
    return records


_warned_spacing = set()


def _usable_spacing(path, spacing, problem, require_spacing):
    if problem is not None:
        if require_spacing:
            raise DataError(f"{path}: {problem}, so it has no usable pixel spacing and --units mm asks "
                            "for millimetres: fix the file's spacing, or use --units px")
        if path not in _warned_spacing:
            _warned_spacing.add(path)
            warnings.warn(f"{path}: {problem}; its surface metrics are in pixels", stacklevel=3)
        return None
    if spacing is None and require_spacing:
        raise DataError(f"{path} states no pixel spacing and --units mm asks for millimetres: add "
                        "PixelSpacing (DICOM) or the voxel size (NIfTI), or use --units px")
    return spacing


def volume_lesions(record, lesion_type, record_type, content_key, box_of, require_spacing=False):
    """Reads one DICOM or NIfTI record and returns its lesions, one per frame (and label) with a mask.

    Args:
        record: a Record whose image is a DICOM or NIfTI file and whose one mask file covers it.
        lesion_type, record_type: the Lesion and Record classes (passed in to avoid an import cycle).
        content_key: function of an image array giving its duplicate key.
        box_of: function of a mask giving its box, or None for an empty mask.
        require_spacing: missing or unusable spacing is an error (millimetres were asked for).

    Returns:
        (lesions, empty_frames): lesions in frame order, and one record per frame without a lesion.

    Raises:
        DataError: unreadable files, a mask whose frames or size differ from the image's, a NIfTI
        mask on another grid, a spacing missing where millimetres are required.
    """
    path, mask_path = record.image_path, record.mask_paths[0]
    frames, spacing, problem, grid = _image_stack(path, _stamp(path))
    spacing = _usable_spacing(path, spacing, problem, require_spacing)
    masks, mask_grid = _mask_stack(mask_path, _stamp(mask_path))
    if grid is not None and mask_grid is not None:
        check_same_grid(path, grid, mask_path, mask_grid)
    if masks.shape[0] != frames.shape[0] or masks.shape[1:3] != frames.shape[1:3]:
        transposed = masks.shape[0] == frames.shape[0] and masks.shape[1:3] == frames.shape[2:0:-1]
        raise DataError(f"{mask_path} holds {masks.shape[0]} mask(s) of {masks.shape[1]}x{masks.shape[2]} "
                        f"but its image {path} has {frames.shape[0]} frame(s) of "
                        f"{frames.shape[1]}x{frames.shape[2]} (count, rows x columns)"
                        + ("; it looks transposed: a NIfTI mask of a cine is (rows, columns, frames)"
                           if transposed else ""))
    labels = [int(v) for v in np.unique(masks) if v != 0]
    several = len(labels) > 1 and mask_grid is not None
    single = len(frames) == 1 and not is_nifti(path)
    lesions, empty = [], []
    for index in range(len(frames)):
        address = path if single else frame_address(path, index)
        image = _rgb(frames[index:index + 1])[0]
        found = []
        for label in (labels if several else [None]):
            values = masks[index]
            box = box_of(values != 0 if label is None else values == label)
            if box is None:
                continue
            if single and mask_grid is None and not is_dicom(mask_path):
                mask_address = mask_path
            else:
                mask_address = frame_address(mask_path, index, label)
            found.append(lesion_type(address, mask_address, record.label if label is None else f"label {label}",
                                     content_key(image), image.shape[:2], box, spacing=spacing, group=path))
        if found:
            lesions.extend(found)
        else:
            empty.append(record_type(address, (mask_path,), record.label))
    return lesions, empty
