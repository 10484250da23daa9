"""Readers that turn a folder of images and masks into lesion records, whatever its layout.

Layouts:
- "busi": BUSI as downloaded: class folders (benign/, malignant/, normal/, any subset) holding
  `X.png` with `X_mask.png`, `X_mask_1.png`, ... (one file per lesion).
- "images-labels": the keras.io SAM example's `images/` and `labels/`, paired by file stem.
- "folders": `images/` and `masks/` with matching stems; `mask_suffix` strips e.g. "_mask".
- "dicom" and "nifti": DICOM images or NIfTI volumes with their masks, one sample per frame or
  slice with a lesion (keras_sam.data.volumes).

Masks saved with lossy compression (JPEG), whose values smear around 0 and 255, are thresholded at
the middle, with one warning per process; masks with several labels are refused.
"""

import dataclasses
import os
import re
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from keras_sam.data.errors import DataError
from keras_sam.data.volumes import (VOLUME_LAYOUTS, detect_volume_layout, is_volume_file,
                                    load_frame, load_frame_mask, volume_lesions, volume_records)
from keras_sam.common.geometry import box_from_mask
from keras_sam.common.storage import content_key

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
BUSI_CLASSES = ("benign", "malignant", "normal")
LAYOUTS = ("busi", "images-labels", "folders", *VOLUME_LAYOUTS)
_BUSI_MASK = re.compile(r"^(?P<stem>.+)_mask(?:_(?P<index>\d+))?$")


@dataclasses.dataclass(frozen=True)
class Record:
    """One image and its lesion mask files (one lesion per file)."""

    image_path: str
    mask_paths: tuple
    label: str


@dataclasses.dataclass(frozen=True)
class Lesion:
    """One lesion: an image, the mask file that outlines it, the image's class and content key."""

    image_path: str
    mask_path: str
    label: str
    image_key: str
    image_size: tuple  # (height, width)
    box: tuple  # (x0, y0, x1, y1) in image pixels
    spacing: tuple = None  # (row, column) pixel size in mm, None when unknown
    group: str = None  # samples of one file (a volume's slices, a cine's frames) share it

    @property
    def id(self):
        """What names this lesion wherever results are joined to it: its mask file."""
        return self.mask_path

    @property
    def mask_paths(self):
        """The mask files whose union is the sample's target: this lesion's one."""
        return (self.mask_path,)


@dataclasses.dataclass
class LesionSet:
    """What `read_lesions` found: lesions to train on, and counts of everything else."""

    lesions: list
    empty: list  # records whose masks are all empty (e.g. BUSI's normal class)
    skipped: list  # (path, reason) left out under on_error="skip"

    def counts(self):
        """Per-class numbers of images, lesions and empty-mask images, and skipped files."""
        classes = sorted({l.label for l in self.lesions} | {r.label for r in self.empty})
        counts = {}
        for label in classes:
            counts[label] = {
                "images": len({l.image_path for l in self.lesions if l.label == label}),
                "lesions": sum(1 for l in self.lesions if l.label == label),
                "empty_mask_images_left_out": sum(1 for r in self.empty if r.label == label),
            }
        return {"per_class": counts, "skipped_files": len(self.skipped)}


def is_busi_mask(file_name):
    """Whether a file name is a BUSI mask's (`benign (1)_mask.png`, `benign (1)_mask_1.png`)."""
    return bool(_BUSI_MASK.match(os.path.splitext(file_name)[0]))


def _images_in(folder):
    return sorted(
        name for name in os.listdir(folder)
        if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
    )


def detect_layout(root):
    """Names the layout of `root`, or raises DataError saying what was looked for (and, when one
    subfolder of `root` has a known layout, naming it)."""
    layout = _layout_of(root)
    if layout is not None:
        return layout
    below = sorted(os.path.join(root, name) for name in os.listdir(root)
                   if os.path.isdir(os.path.join(root, name)) and _layout_of(os.path.join(root, name)))
    hint = f" Did you mean {below[0]}?" if len(below) == 1 else (
        f" Did you mean one of {', '.join(below)}?" if below else "")
    raise DataError(
        f"no known layout in {root}: looked for class folders {', '.join(BUSI_CLASSES)} with "
        "X.png and X_mask.png (BUSI), images/ with labels/ (keras.io example), images/ with "
        "masks/ (matching stems), or DICOM/NIfTI files in images/ (or imagesTr/). Pass --layout to "
        "say which." + hint
    )


def _layout_of(root):
    """The layout of `root`, or None."""
    if not os.path.isdir(root):
        raise DataError(f"data folder {root} does not exist")
    entries = set(os.listdir(root))
    volume = detect_volume_layout(root)
    if volume:
        return volume
    if any(os.path.isdir(os.path.join(root, c)) for c in BUSI_CLASSES if c in entries):
        return "busi"
    if {"images", "labels"} <= entries:
        return "images-labels"
    if {"images", "masks"} <= entries:
        return "folders"
    return None


def find_records(root, layout="auto", mask_suffix=""):
    """Lists the images of `root` with their mask files.

    Args:
        root: the data folder.
        layout: "auto" or one of LAYOUTS.
        mask_suffix: for "folders", the suffix mask stems carry (e.g. "_mask").

    Returns:
        A list of Record, sorted by path.

    Raises:
        DataError: no images, an image with no mask, a mask with no image, unknown layout.
    """
    root = os.fspath(root)
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; choose auto, {', '.join(LAYOUTS)}")
    if layout == "busi":
        records = _busi_records(root)
    elif layout in VOLUME_LAYOUTS:
        records = volume_records(root, layout, mask_suffix, Record)
    elif layout == "images-labels":
        records = _paired_records(root, "images", "labels", "")
    else:
        records = _paired_records(root, "images", "masks", mask_suffix)
    if not records:
        raise DataError(f"{root} holds no images (layout {layout})")
    return records


def _busi_records(root):
    records = []
    for label in BUSI_CLASSES:
        folder = os.path.join(root, label)
        if not os.path.isdir(folder):
            continue
        images, masks = {}, {}
        for name in _images_in(folder):
            stem = os.path.splitext(name)[0]
            match = _BUSI_MASK.match(stem)
            if match:
                masks.setdefault(match["stem"], []).append((int(match["index"] or 0), name))
            else:
                images[stem] = name
        for stem, files in masks.items():
            if stem not in images:
                raise DataError(
                    f"{os.path.join(folder, files[0][1])} is a mask with no image "
                    f"(expected {stem}.png beside it)"
                )
        for stem, name in sorted(images.items()):
            if stem not in masks:
                raise DataError(
                    f"{os.path.join(folder, name)} has no mask (expected {stem}_mask.png beside it)"
                )
            paths = tuple(os.path.join(folder, m) for _, m in sorted(masks[stem]))
            records.append(Record(os.path.join(folder, name), paths, label))
    return records


def _paired_records(root, image_dir, mask_dir, mask_suffix):
    image_folder, mask_folder = os.path.join(root, image_dir), os.path.join(root, mask_dir)
    for folder in (image_folder, mask_folder):
        if not os.path.isdir(folder):
            raise DataError(f"{folder} does not exist: this layout needs {image_dir}/ and {mask_dir}/ in {root}")
    masks = {}
    for name in _images_in(mask_folder):
        stem = os.path.splitext(name)[0]
        if mask_suffix and stem.endswith(mask_suffix):
            stem = stem[: -len(mask_suffix)]
        masks[stem] = name
    records = []
    for name in _images_in(image_folder):
        stem = os.path.splitext(name)[0]
        if stem not in masks:
            raise DataError(
                f"{os.path.join(image_folder, name)} has no mask: no {stem}{mask_suffix}.* in {mask_folder}"
            )
        records.append(Record(os.path.join(image_folder, name),
                              (os.path.join(mask_folder, masks[stem]),), "lesion"))
    return records


def _open(path):
    if os.path.getsize(path) == 0:
        raise DataError(f"{path} is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{path} cannot be decoded as an image ({error})") from error


def load_image(path):
    """Reads an image (or a frame or slice of a DICOM or NIfTI file) as an (H, W, 3) uint8 RGB array."""
    if is_volume_file(path):
        return load_frame(path)
    return np.asarray(_open(path).convert("RGB"))


def load_target(sample):
    """A sample's target at its image's size: the union of its mask files (one for a lesion, all
    of an image's for a keras_sam.data.ImageSample, none set for a normal image), (H, W) bool."""
    target = np.zeros(sample.image_size, bool)
    for path in sample.mask_paths:
        target |= load_mask(path, sample.image_size)
    return target


def load_mask(path, image_size=None):
    """Reads a binary mask (1-bit, grey, RGB or RGBA; values 0/1 or 0/255) as an (H, W) bool array.

    A mask smeared by lossy compression (values near 0 and near the top, few in between) is
    thresholded at the middle, with a warning the first time.

    Args:
        path: the mask file, or a frame or slice of a DICOM or NIfTI mask (keras_sam.data.volumes).
        image_size: its image's (height, width); a mask of another size is an error.

    Raises:
        DataError: undecodable, wrong size, or several labels.
    """
    if is_volume_file(path):
        return load_frame_mask(path, image_size)
    image = _open(path)
    if image.mode == "1":
        mask = np.asarray(image, bool)
    else:
        if image.mode in ("RGBA", "LA"):
            image = image.convert("RGBA")
            values = np.asarray(image)[..., :3].max(axis=-1)
        else:
            values = np.asarray(image.convert("RGB")).max(axis=-1)
        distinct = np.unique(values)
        if len(distinct) > 2 or (len(distinct) == 2 and distinct[0] != 0):
            if not _smeared(values):
                shown = ", ".join(str(v) for v in distinct[:6]) + (", ..." if len(distinct) > 6 else "")
                raise DataError(f"masks must be binary; {path} has values {shown} (several labels? "
                                "save one mask file per lesion)")
            _warn_smeared_once(path)
            mask = values >= SMEARED_THRESHOLD
        else:
            mask = values > 0
    if image_size is not None and mask.shape != tuple(image_size):
        raise DataError(
            f"{path} is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{image_size[1]}x{image_size[0]} (width x height)"
        )
    return mask


SMEARED_THRESHOLD = 128  # the middle of 0..255
_SMEARED_BAND = 64  # values this close to 0 or 255 are compression noise around them
_SMEARED_SHARE = 0.02  # at most this share of pixels may lie in between (edges of the outline)
_smeared_warned = []


def _smeared(values):
    """True for an 8-bit mask whose values cluster at 0 and 255 with a scatter of others along the
    outline (lossy compression), False for labels (e.g. 0, 1, 2 or 0, 128, 255)."""
    values = np.asarray(values)
    if values.max() < 255 - _SMEARED_BAND:
        return False
    between = values[(values > _SMEARED_BAND) & (values < 255 - _SMEARED_BAND)]
    if between.size > _SMEARED_SHARE * values.size:
        return False
    if between.size == 0:
        return True  # every value within the noise band of 0 or 255
    # Compression noise spreads over many values; a label is one value repeated.
    return np.bincount(between).max() < 0.5 * between.size and len(np.unique(between)) > 2


def _warn_smeared_once(path):
    if not _smeared_warned:
        _smeared_warned.append(path)
        warnings.warn(f"{path} (and maybe other masks) has values smeared around 0 and 255, as lossy "
                      f"compression (JPEG) leaves them: thresholded at {SMEARED_THRESHOLD}. Save masks "
                      "as PNG to keep them exact.", stacklevel=3)


def read_lesions(records, on_error="raise", progress=True, require_spacing=False):
    """Checks every file and turns records into lesions, one per non-empty mask file.

    Args:
        records: from `find_records`.
        on_error: "raise" stops at the first bad file; "skip" warns, leaves the image out and
            counts it.
        progress: show a progress bar.
        require_spacing: a DICOM or NIfTI file without a usable pixel spacing is an error (when
            results are asked for in millimetres); otherwise its lesions have spacing None.

    Returns:
        LesionSet.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
    lesions, empty, skipped = [], [], []
    for record in tqdm(records, desc="Checking data", unit="image", disable=not progress):
        try:
            if is_volume_file(record.image_path):
                found, empty_frames = volume_lesions(record, Lesion, Record, content_key, _box_of,
                                                     require_spacing)
                lesions.extend(found)
                empty.extend(empty_frames)
                continue
            if require_spacing:
                raise DataError(f"{record.image_path} carries no pixel spacing (only DICOM and NIfTI "
                                "files do) and --units mm asks for millimetres: use --units px")
            image = load_image(record.image_path)
            size = image.shape[:2]
            key = content_key(image)
            found = []
            for mask_path in record.mask_paths:
                box = _box_of(load_mask(mask_path, size))
                if box is not None:
                    found.append(Lesion(record.image_path, mask_path, record.label, key, size, box))
        except DataError as error:
            if on_error == "raise":
                raise
            warnings.warn(f"skipped: {error}", stacklevel=2)
            skipped.append((record.image_path, str(error)))
            continue
        if found:
            lesions.extend(found)
        else:
            empty.append(record)
    return LesionSet(lesions, empty, skipped)


def _box_of(mask):
    box = box_from_mask(mask)
    return None if box is None else tuple(float(v) for v in box)
