"""Fine-tune SAM's mask decoder with compile() and fit(), then predict on a new image.

The keras.io example's second half, the Keras way: read a breast-ultrasound data set, a
DataGenerator and tf.data pipeline with a box jittered anew every epoch, the Dice loss, Adam with
the vision and prompt encoders frozen, fit with validation and callbacks, predict and show, and
the test split's Dice before and after. Runs offline on generated phantoms and sam-small-shapes
(the small SAM that comes with keras-sam); KERAS_SAM_MODEL and --data pick another checkpoint
and BUSI.

    python examples/finetune_with_fit.py --epochs 20 --output example-finetune
"""

import argparse
import os
import tempfile

import tf_keras as keras

from keras_sam import DiceLoss, SamSegmenter
from keras_sam.callbacks import MaskOverlayCallback
from keras_sam.data import build_dataset, find_records, load_image, read_lesions, split_lesions, write_busi_phantoms
from keras_sam.common.evaluation import evaluate_lesions, summarize
from keras_sam.common.inference import segment_image
from keras_sam.common.visualization import display_masks_on_img


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="BUSI folder (default: generated phantoms)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--output", default="example-finetune")
    args = parser.parse_args()
    data = args.data or write_busi_phantoms(tempfile.mkdtemp(), seed=1)

    lesions = read_lesions(find_records(data)).lesions
    splits, _ = split_lesions(lesions, val=0.2, test=0.1, seed=0)
    name = os.environ.get("KERAS_SAM_MODEL")  # vision and prompt encoders frozen by default
    model = SamSegmenter.from_pretrained(name or "sam-small-shapes")
    train = build_dataset(splits["train"], model.processor, batch_size=4)
    val = build_dataset(splits["val"], model.processor, batch_size=4, training=False)
    test = build_dataset(splits["test"], model.processor, batch_size=4, training=False, with_ids=True)
    before, _ = evaluate_lesions(model, splits["test"], test, model.processor, description="Test, before")

    # keras.io uses Adam(1e-5) on sam-vit-base; the small model learns at a larger step.
    model.compile(optimizer=keras.optimizers.Adam(1e-5 if name else 3e-4), loss=DiceLoss())
    logs = os.path.join(args.output, "logs")
    model.fit(train, validation_data=val, epochs=args.epochs, callbacks=[
        keras.callbacks.TensorBoard(logs),
        MaskOverlayCallback(val, logs, every_n_epochs=5),
        keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=10, restore_best_weights=True),
    ])
    model.save_pretrained(os.path.join(args.output, "model"))
    after, _ = evaluate_lesions(model, splits["test"], test, model.processor, description="Test, after")
    print(f"Test Dice at image resolution: before {summarize(before)['dice']:.3f}, after "
          f"{summarize(after)['dice']:.3f}, the prompt box alone {summarize(after, 'box_')['dice']:.3f}")

    lesion = splits["test"][0]  # a new image, never trained on
    image = load_image(lesion.image_path)
    result = segment_image(model, image, boxes=[lesion.box], best=False)
    display_masks_on_img(image, result.masks[0], result.scores[0], boxes=lesion.box).savefig(
        os.path.join(args.output, "prediction.png"))
    print(f"Model in {args.output}/model; prediction.png beside it; tensorboard --logdir {logs}")


if __name__ == "__main__":
    main()
