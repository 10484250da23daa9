"""Prompt SAM with points and with a box, and show the masks with their IoU scores.

The keras.io example's first half: load SAM and its processor, show points and boxes on an image,
predict masks and show them with the model's IoU scores. Runs offline on the tiny random model;
set KERAS_SAM_MODEL=facebook/sam-vit-base (or a saved directory) for a real checkpoint.

    python examples/prompt_with_points_and_boxes.py --output example-prompts
"""

import argparse
import os
import tempfile

import numpy as np

from keras_sam import SamSegmenter, processor_for_config
from keras_sam.preprocessing import masks_at_image_size, preprocess_image, to_model_coordinates
from keras_sam.prompts import box_from_mask
from keras_sam.visualization import display_boxes_on_img, display_masks_on_img, display_points_on_img
from training.datasets import load_image, load_mask
from training.models import load_segmenter
from training.phantoms import write_busi_phantoms


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="example-prompts")
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)

    model: SamSegmenter = load_segmenter(os.environ.get("KERAS_SAM_MODEL", "tiny"))
    processor = processor_for_config(model.sam.config)
    data = write_busi_phantoms(tempfile.mkdtemp(), counts={"benign": 1}, seed=3, duplicates=0)
    image = load_image(os.path.join(data, "benign", "benign (1).png"))
    height, width = image.shape[:2]
    # Prompts as a user would click them: a box around the lesion and a point at its centre.
    box = box_from_mask(load_mask(os.path.join(data, "benign", "benign (1)_mask.png"))).tolist()
    point = [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]]
    display_points_on_img(image, point, [1]).savefig(os.path.join(args.output, "points.png"))
    display_boxes_on_img(image, [box]).savefig(os.path.join(args.output, "box.png"))

    embedding = model.image_embeddings(preprocess_image(image, processor)[None])  # once per image
    model.multimask_output = True  # three candidate masks per prompt, as SAM does by default
    prompts = {
        "points": {"input_points": to_model_coordinates([point], (height, width), processor),
                   "input_labels": np.ones((1, 1), np.int32)},
        "box": {"input_boxes": to_model_coordinates([box], (height, width), processor)},
    }
    for name, prompt in prompts.items():
        output = model.segment({"image_embeddings": embedding, **prompt})
        masks = masks_at_image_size(output.mask_logits[0], (height, width), processor)
        scores = output.iou_scores.numpy()[0]
        figure = display_masks_on_img(image, masks, scores,
                                      boxes=box if name == "box" else None,
                                      points=point if name == "points" else None)
        figure.savefig(os.path.join(args.output, f"masks_from_{name}.png"))
        print(f"{name}: IoU scores {[round(float(score), 3) for score in scores]}")
    print(f"Figures in {args.output}/")


if __name__ == "__main__":
    main()
