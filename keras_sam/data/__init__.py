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

import importlib

_EXPORTS = {
    "write_busi_phantoms": "phantoms",
    "DataGenerator": "pipeline", "build_dataset": "pipeline", "cache_embeddings": "pipeline",
    "steps_per_epoch": "pipeline",
    "PROMPT_KINDS": "prompt_options", "PromptOptions": "prompt_options",
    "LAYOUTS": "readers", "DataError": "readers", "Lesion": "readers", "LesionSet": "readers",
    "Record": "readers", "detect_layout": "readers", "find_records": "readers", "load_image": "readers",
    "load_mask": "readers", "read_lesions": "readers",
    "ImageSample": "whole_images", "image_samples": "whole_images", "normal_samples": "whole_images",
    "load_target": "readers",
    "SPLITS": "splits", "apply_manifest": "splits", "split_lesions": "splits", "write_manifest": "splits",
}

__all__ = [
    "DataError",
    "DataGenerator",
    "ImageSample",
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
    "image_samples",
    "load_image",
    "load_mask",
    "load_target",
    "normal_samples",
    "read_lesions",
    "split_lesions",
    "steps_per_epoch",
    "write_busi_phantoms",
    "write_manifest",
]


def __getattr__(name):
    # Loaded on first use: reading folders needs no TensorFlow, only the pipeline does.
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_sam.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"keras_sam.data.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
