"""Prompt SAM with points and with a box, and show the masks with their IoU scores.

The keras.io example's first half: load SAM and its processor, show points and boxes on an image,
predict masks and show them with the model's IoU scores. Runs offline on sam-small-shapes, the
small SAM that comes with keras-sam; set KERAS_SAM_MODEL=facebook/sam-vit-base (or a saved
directory) for another checkpoint.

    python examples/prompt_with_points_and_boxes.py --output example-prompts
"""

import argparse
import os
import tempfile

from keras_sam import SamSegmenter
from keras_sam.data import load_image, load_mask, write_busi_phantoms
from keras_sam.common.geometry import box_from_mask
from keras_sam.common.inference import segment_image
from keras_sam.common.visualization import display_boxes_on_img, display_masks_on_img, display_points_on_img


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="example-prompts")
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)

    # Three candidate masks per prompt, as SAM does by default.
    model = SamSegmenter.from_pretrained(os.environ.get("KERAS_SAM_MODEL", "sam-small-shapes"),
                                         multimask_output=True)
    data = write_busi_phantoms(tempfile.mkdtemp(), counts={"benign": 1}, seed=3, duplicates=0)
    image = load_image(os.path.join(data, "benign", "benign (1).png"))
    # Prompts as a user would click them: a box around the lesion and a point at its centre.
    box = box_from_mask(load_mask(os.path.join(data, "benign", "benign (1)_mask.png"))).tolist()
    point = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
    display_points_on_img(image, [point], [1]).savefig(os.path.join(args.output, "points.png"))
    display_boxes_on_img(image, [box]).savefig(os.path.join(args.output, "box.png"))

    for name, prompt in {"points": {"points": [point]}, "box": {"boxes": [box]}}.items():
        result = segment_image(model, image, best=False, **prompt)  # all 3 masks, at image size
        figure = display_masks_on_img(image, result.masks[0], result.scores[0],
                                      boxes=prompt.get("boxes"), points=prompt.get("points"))
        figure.savefig(os.path.join(args.output, f"masks_from_{name}.png"))
        print(f"{name}: IoU scores {[round(float(score), 3) for score in result.scores[0]]}")
    print(f"Figures in {args.output}/")


if __name__ == "__main__":
    main()
