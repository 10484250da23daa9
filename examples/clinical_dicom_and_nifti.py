"""Fine-tune SAM on DICOM and NIfTI files and report HD95 and NSD in millimetres.

Writes a synthetic ultrasound DICOM study (single frames with PNG masks, cine loops with a NIfTI
mask per loop, PixelSpacing 0.25 x 0.2 mm) and NIfTI volumes in nnU-Net's layout (voxels
0.8 x 0.6 x 3 mm), then for each: reads one sample per frame or slice with a lesion, splits them
keeping each file's samples together, fine-tunes sam-small-shapes' mask decoder, and scores the
test split. Nothing is downloaded; needs `pip install keras-sam[dicom,nifti]`.

    python examples/clinical_dicom_and_nifti.py --epochs 5
    python examples/clinical_dicom_and_nifti.py --write-only --output clinical-data  # the folders only

The same folders train from the command line:

    keras-sam finetune --data <folder> --model sam-small-shapes --output run
"""

import argparse
import os
import tempfile

import tf_keras as keras

from keras_sam import DiceLoss, SamSegmenter
from keras_sam.data import PromptOptions, build_dataset, find_records, read_lesions, split_lesions
from keras_sam.data.clinical_phantoms import write_dicom_phantoms, write_nifti_phantoms
from keras_sam.common.evaluation import evaluate_lesions, summarize


def fine_tune_and_score(data, epochs, tolerance):
    """Fine-tunes sam-small-shapes on `data` and returns the test split's summaries."""
    lesions = read_lesions(find_records(data), progress=False).lesions  # layout found by itself
    splits, _ = split_lesions(lesions, val=0.2, test=0.2, seed=0)
    keras.utils.set_random_seed(0)
    model = SamSegmenter.from_pretrained("sam-small-shapes")
    # The phantoms' lesions are smaller than BUSI's: a smaller box jitter (image pixels) suits them.
    options = dict(batch_size=4, prompts=PromptOptions("box", jitter=10.0))
    train = build_dataset(splits["train"], model.processor, **options)
    val = build_dataset(splits["val"], model.processor, training=False, **options)
    test = build_dataset(splits["test"], model.processor, training=False, with_ids=True, **options)
    model.compile(optimizer=keras.optimizers.Adam(3e-4), loss=DiceLoss())
    model.fit(train, validation_data=val, epochs=epochs, verbose=2)
    rows, _ = evaluate_lesions(model, splits["test"], test, model.processor, progress=False,
                               nsd_tolerance=tolerance)
    return summarize(rows), summarize(rows, prefix="box_"), len(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--nsd-tolerance", type=float, default=2.0, help="mm (MedSAM's default)")
    parser.add_argument("--output", default=None, help="where to write the data (default: a temporary folder)")
    parser.add_argument("--write-only", action="store_true",
                        help="write the two folders and print the keras-sam commands that train on them")
    args = parser.parse_args()
    root = args.output or tempfile.mkdtemp(prefix="keras-sam-clinical-")
    folders = {
        "DICOM ultrasound study": write_dicom_phantoms(os.path.join(root, "dicom_study"), seed=0),
        "NIfTI volumes (nnU-Net layout)": write_nifti_phantoms(os.path.join(root, "nifti_task"), seed=0),
    }
    if args.write_only:
        for name, data in folders.items():
            print(f"{name}:\n  keras-sam finetune --data {data} --model sam-small-shapes --output {data}-run")
        return
    for name, data in folders.items():
        model, box, count = fine_tune_and_score(data, args.epochs, args.nsd_tolerance)
        unit = model["surface_unit"]
        print(f"\n{name} ({data}), {count} test lesions:")
        for label, summary in (("fine-tuned", model), ("prompt box alone", box)):
            print(f"  {label:17} Dice {summary['dice']:.3f}  IoU {summary['iou']:.3f}  "
                  f"HD95 {summary['hd95']:.2f} {unit} (median {summary['hd95_median']:.2f})  "
                  f"NSD@{args.nsd_tolerance:g}{unit} {summary['nsd']:.3f}")


if __name__ == "__main__":
    main()
