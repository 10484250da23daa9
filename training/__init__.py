"""The keras-sam fine-tuning application: data sets, splits, the tf.data pipeline and the command line."""

from training.datasets import DataError, Lesion, Record, find_records, read_lesions
from training.phantoms import write_busi_phantoms
from training.pipeline import DataGenerator, build_dataset
from training.splits import split_lesions

__all__ = [
    "DataError",
    "DataGenerator",
    "Lesion",
    "Record",
    "build_dataset",
    "find_records",
    "read_lesions",
    "split_lesions",
    "write_busi_phantoms",
]
