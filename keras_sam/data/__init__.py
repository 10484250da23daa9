"""Data for fine-tuning SAM: readers for folders of images and masks (BUSI, the keras.io layout,
generic folders, DICOM and NIfTI files with one sample per frame or slice), duplicate-aware splits,
the DataGenerator/tf.data pipeline, and phantoms (keras_sam.data.clinical_phantoms writes DICOM and
NIfTI ones).

None of it imports a Keras: every model family trains on these datasets.

Example:
    >>> from keras_sam.data import build_dataset, find_records, read_lesions, split_lesions
    >>> lesions = read_lesions(find_records("Dataset_BUSI_with_GT")).lesions  # doctest: +SKIP
    >>> splits, warnings = split_lesions(lesions, val=0.15, test=0.15, seed=0)  # doctest: +SKIP
"""

from keras_sam.data.phantoms import write_busi_phantoms
from keras_sam.data.pipeline import (PROMPT_KINDS, DataGenerator, PromptOptions, build_dataset,
                                     cache_embeddings, steps_per_epoch)
from keras_sam.data.readers import (LAYOUTS, DataError, Lesion, LesionSet, Record, detect_layout,
                                    find_records, load_image, load_mask, read_lesions)
from keras_sam.data.splits import SPLITS, apply_manifest, split_lesions, write_manifest

__all__ = [
    "DataError",
    "DataGenerator",
    "LAYOUTS",
    "Lesion",
    "LesionSet",
    "PROMPT_KINDS",
    "PromptOptions",
    "Record",
    "SPLITS",
    "apply_manifest",
    "build_dataset",
    "cache_embeddings",
    "detect_layout",
    "find_records",
    "load_image",
    "load_mask",
    "read_lesions",
    "split_lesions",
    "steps_per_epoch",
    "write_busi_phantoms",
    "write_manifest",
]
