"""Samples for training and scoring with no prompt: one per image, its target the union of its lesions.

With no point, box or mask there is no way to say which lesion is meant, so the model learns to
outline every lesion of an image at once. Images without a lesion (BUSI's `normal/` class) can join
as negatives whose target is empty.

    lesions (one per mask file) ─► image_samples ─► ImageSample (one per image, all its masks)
    empty-mask records of the normal class ─► normal_samples ─► ImageSample (no lesion, empty target)

An ImageSample has every attribute of a keras_sam.data.Lesion that the pipeline, the split and
evaluation read, so `split_lesions`, `build_dataset` and `evaluate_lesions` take it as they take a
lesion.
"""

import dataclasses

from keras_sam.data.errors import DataError
from keras_sam.data.readers import load_image
from keras_sam.common.storage import content_key

NORMAL_CLASS = "normal"
"""The class whose images have no lesion (BUSI's `normal/` folder)."""


@dataclasses.dataclass(frozen=True)
class ImageSample:
    """One image as a no-prompt sample: all its lesion masks together (none for a normal image).

    Attributes:
        image_path, label, image_key, image_size, spacing, group: as a Lesion's.
        mask_paths: the lesion mask files whose union is the target (empty: no lesion).
        box: the box around every lesion, or the whole image for a normal image (x0, y0, x1, y1)
            in image pixels (no prompt uses it; it keeps the sample's prompt seed stable).
    """

    image_path: str
    mask_paths: tuple
    label: str
    image_key: str
    image_size: tuple
    box: tuple
    spacing: tuple = None
    group: str = None

    @property
    def id(self):
        """What names this sample wherever results are joined to it: its image file."""
        return self.image_path

    @property
    def mask_path(self):
        """The first mask file (what a lesion's row shows); "" for an image without a lesion."""
        return self.mask_paths[0] if self.mask_paths else ""

    @property
    def has_lesion(self):
        return bool(self.mask_paths)


def image_samples(lesions):
    """One ImageSample per image among `lesions`, in the order the images first appear.

    Args:
        lesions: keras_sam.data.Lesion records (several may share an image).

    Returns:
        list of ImageSample whose target is the union of the image's lesion masks.
    """
    by_image = {}
    for lesion in lesions:
        by_image.setdefault(lesion.image_path, []).append(lesion)
    samples = []
    for path, group in by_image.items():
        first = group[0]
        boxes = [lesion.box for lesion in group]
        box = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
               max(b[3] for b in boxes))
        samples.append(ImageSample(path, tuple(lesion.mask_path for lesion in group), first.label,
                                   first.image_key, first.image_size, box, first.spacing, first.group))
    return samples


def normal_samples(lesion_set, data=""):
    """The images of the normal class (no lesion) as ImageSamples with an empty target.

    Args:
        lesion_set: what keras_sam.data.read_lesions returned; its `empty` records are the images
            whose masks are all empty.
        data: the data folder, named in the error.

    Raises:
        DataError: the data has no normal class (no empty-mask image labelled "normal").
    """
    records = [record for record in lesion_set.empty if record.label == NORMAL_CLASS]
    if not records:
        raise DataError(f"--include-normal: {data or 'the data'} has no normal class (BUSI's normal/ folder "
                        "of images without a lesion, with all-empty masks); add one or leave out "
                        "--include-normal")
    samples = []
    for record in records:
        image = load_image(record.image_path)
        height, width = image.shape[:2]
        samples.append(ImageSample(record.image_path, (), record.label, content_key(image), (height, width),
                                   (0.0, 0.0, float(width), float(height))))
    return samples
