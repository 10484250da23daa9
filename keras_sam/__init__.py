"""keras-sam: fine-tune Segment Anything (SAM) on medical images with tf-keras compile() and fit()."""

from keras_sam.configs import processor_for_config, sam_vit_base_config, tiny_sam_config
from keras_sam.losses import DiceBCELoss, DiceLoss, FocalLoss
from keras_sam.metrics import DiceScore, IoUScore
from keras_sam.segmenter import SamSegmenter, SegmentationOutput, best_mask_logits

__version__ = "0.1.0"

__all__ = [
    "DiceBCELoss",
    "DiceLoss",
    "DiceScore",
    "FocalLoss",
    "IoUScore",
    "SamSegmenter",
    "SegmentationOutput",
    "best_mask_logits",
    "processor_for_config",
    "sam_vit_base_config",
    "tiny_sam_config",
]
