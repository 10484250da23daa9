"""Fine-tune SAM's mask decoder with compile() and fit(), then predict on a new image.

The keras.io example's second half, the Keras way: read a breast-ultrasound data set, a
DataGenerator and tf.data pipeline with a box jittered anew every epoch, the Dice loss, Adam with
the vision and prompt encoders frozen, fit with validation and callbacks, predict and show.
Runs offline on generated phantoms and the tiny random model; KERAS_SAM_MODEL and --data pick a
real checkpoint and BUSI.

    python examples/finetune_with_fit.py --epochs 20 --output example-finetune
"""

import argparse
import os
import tempfile

import tf_keras as keras

from keras_sam import DiceLoss, processor_for_config
from keras_sam.callbacks import MaskOverlayCallback
from keras_sam.preprocessing import masks_at_image_size, preprocess_image, to_model_coordinates
from keras_sam.visualization import display_masks_on_img
from training import build_dataset, find_records, read_lesions, split_lesions, write_busi_phantoms
from training.datasets import load_image
from training.models import load_segmenter


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="BUSI folder (default: generated phantoms)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--output", default="example-finetune")
    args = parser.parse_args()
    model_name = os.environ.get("KERAS_SAM_MODEL", "tiny")
    data = args.data or write_busi_phantoms(tempfile.mkdtemp(), seed=1)

    lesions = read_lesions(find_records(data)).lesions
    splits, _ = split_lesions(lesions, val=0.2, test=0.1, seed=0)
    model = load_segmenter(model_name)  # vision and prompt encoders frozen by default
    config, processor = model.sam.config, processor_for_config(model.sam.config)
    train = build_dataset(splits["train"], processor, config, batch_size=4, prompt="box")
    val = build_dataset(splits["val"], processor, config, batch_size=4, shuffle=False, fixed_prompts=True)

    # keras.io uses Adam(1e-5) on pretrained weights; random tiny weights need a larger step.
    learning_rate = 3e-3 if model_name == "tiny" else 1e-5
    model.compile(optimizer=keras.optimizers.legacy.Adam(learning_rate), loss=DiceLoss())
    logs = os.path.join(args.output, "logs")
    model.fit(train, validation_data=val, epochs=args.epochs, callbacks=[
        keras.callbacks.TensorBoard(logs),
        MaskOverlayCallback(val, logs, every_n_epochs=5),
        keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=10, restore_best_weights=True),
    ])
    model.save_pretrained(os.path.join(args.output, "model"))

    lesion = splits["test"][0]  # a new image, never trained on
    image = load_image(lesion.image_path)
    box = to_model_coordinates([lesion.box], image.shape[:2], processor)
    output = model.segment({"pixel_values": preprocess_image(image, processor)[None], "input_boxes": box})
    masks = masks_at_image_size(output.mask_logits[0], image.shape[:2], processor)
    display_masks_on_img(image, masks, output.iou_scores.numpy()[0], boxes=lesion.box).savefig(
        os.path.join(args.output, "prediction.png"))
    print(f"Model in {args.output}/model; prediction.png beside it; tensorboard --logdir {logs}")


if __name__ == "__main__":
    main()
