"""Synthetic clinical files: an ultrasound DICOM study and NIfTI volumes, with their masks.

For trying the "dicom" and "nifti" layouts without patient data (tests, examples, a first run).
The pictures are the breast-ultrasound phantoms of keras_sam.data.phantoms; what is clinical is the
container: DICOM with PixelSpacing (single frames with PNG masks, cine loops whose masks are a NIfTI
volume of one mask per frame), and NIfTI volumes with anisotropic voxels, a CT-like intensity range
and a label volume on the same grid. Deterministic by seed; needs pydicom and nibabel.
"""

import os

import numpy as np
from PIL import Image

from keras_sam.data.phantoms import phantom


def dicom_dataset(pixels, spacing=(0.1, 0.1), multi_frame=False, **attributes):
    """A pydicom Dataset of an ultrasound image (or cine) holding `pixels`.

    Args:
        pixels: (H, W) or, with `multi_frame`, (F, H, W) uint8 or uint16 grey values.
        spacing: (row, column) PixelSpacing in mm, or None to leave it out.
        multi_frame: `pixels` holds several frames.
        **attributes: more DICOM attributes to set (e.g. WindowCenter=40).

    Returns:
        pydicom.Dataset, ready for `save_as(path, enforce_file_format=True)`.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (ExplicitVRLittleEndian, UltrasoundImageStorage,
                             UltrasoundMultiFrameImageStorage, generate_uid)

    sop_class = UltrasoundMultiFrameImageStorage if multi_frame else UltrasoundImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "US"
    pixels = np.ascontiguousarray(pixels)
    bits = 8 if pixels.dtype == np.uint8 else 16
    dataset.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=bits)
    if spacing is not None:
        dataset.PixelSpacing = [f"{value:g}" for value in spacing]
    for name, value in attributes.items():
        setattr(dataset, name, value)
    return dataset


def write_dicom_phantoms(root, singles=16, cines=4, frames=5, seed=0, size=(240, 300),
                         spacing=(0.25, 0.2)):
    """Writes a "dicom"-layout folder: `images/*.dcm` and `masks/` (PNG or NIfTI per image).

    Args:
        root: folder to create.
        singles: single-frame images, each with a PNG mask.
        cines: multi-frame cine loops, each with a NIfTI mask volume (H, W, frames); the lesion drifts
            from frame to frame and is missing in the last frame.
        frames: frames per cine.
        seed: the same seed writes the same files.
        size: (height, width) of every image.
        spacing: (row, column) PixelSpacing in mm.

    Returns:
        The root path.
    """
    import nibabel

    rng = np.random.default_rng(seed)
    images, masks = os.path.join(root, "images"), os.path.join(root, "masks")
    os.makedirs(images, exist_ok=True)
    os.makedirs(masks, exist_ok=True)
    for number in range(singles):
        image, lesions = phantom(size, rng, 1)
        dicom_dataset(image[..., 0], spacing).save_as(os.path.join(images, f"us_{number:03d}.dcm"),
                                                      enforce_file_format=True)
        Image.fromarray(lesions[0].astype(np.uint8) * 255).save(os.path.join(masks, f"us_{number:03d}.png"))
    for number in range(cines):
        image, lesions = phantom(size, rng, 1)
        stack, mask_stack = [], []
        for frame in range(frames):
            shift = 2 * frame  # the probe drifts: the picture moves a little each frame
            stack.append(np.roll(image[..., 0], shift, axis=1))
            moved = np.roll(lesions[0], shift, axis=1)
            mask_stack.append(moved if frame < frames - 1 else np.zeros_like(moved))
        dicom_dataset(np.stack(stack), spacing, multi_frame=True).save_as(
            os.path.join(images, f"cine_{number:03d}.dcm"), enforce_file_format=True)
        volume = np.stack(mask_stack, axis=-1).astype(np.uint8)  # (H, W, frames)
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), os.path.join(masks, f"cine_{number:03d}.nii.gz"))
    return root


def nifti_affine(spacing):
    """A voxel-to-world matrix with voxel size `spacing` (i, j, k) in mm."""
    return np.diag([*spacing, 1.0]).astype(float)


def write_nifti_phantoms(root, volumes=8, slices=8, seed=0, size=(192, 224), spacing=(0.8, 0.6, 3.0)):
    """Writes a "nifti"-layout folder as nnU-Net names it: `imagesTr/case_XXX_0000.nii.gz` and
    `labelsTr/case_XXX.nii.gz`.

    Each volume holds a lesion over a few middle slices, growing then shrinking like an ellipsoid
    cut across; its values are CT-like (int16, about -100 to 200) and its voxels anisotropic.

    Args:
        root: folder to create.
        volumes: number of volumes.
        slices: slices per volume.
        seed: the same seed writes the same files.
        size: (rows, columns) of each slice, i.e. the first two voxel axes.
        spacing: voxel size (i, j, k) in mm.

    Returns:
        The root path.
    """
    import nibabel

    rng = np.random.default_rng(seed)
    images, labels = os.path.join(root, "imagesTr"), os.path.join(root, "labelsTr")
    os.makedirs(images, exist_ok=True)
    os.makedirs(labels, exist_ok=True)
    for number in range(volumes):
        _, lesions = phantom(size, rng, 1)  # the outline only: each slice draws its own cut of it
        background, _ = phantom(size, rng, 0)
        grey = background[..., 0].astype(np.float64)
        volume, label = [], []
        for index in range(slices):
            # The lesion's cut grows then shrinks through the middle slices, and is absent at the ends.
            scale = 1.0 - abs(index - (slices - 1) / 2) / (slices / 2)
            eroded = _shrink(lesions[0], scale) if scale > 0.45 else np.zeros(size, bool)
            noise = rng.normal(0, 8, size)
            slice_values = grey * 1.2 - 100 + noise
            slice_values[eroded] = rng.uniform(-60, -30) + noise[eroded]
            volume.append(slice_values)
            label.append(eroded)
        data = np.stack(volume, axis=-1).astype(np.int16)
        affine = nifti_affine(spacing)
        nibabel.save(nibabel.Nifti1Image(data, affine),
                     os.path.join(images, f"case_{number:03d}_0000.nii.gz"))
        nibabel.save(nibabel.Nifti1Image(np.stack(label, axis=-1).astype(np.uint8), affine),
                     os.path.join(labels, f"case_{number:03d}.nii.gz"))
    return root


def _shrink(mask, scale):
    """`mask` scaled by `scale` about its centre (nearest pixel)."""
    rows, cols = np.nonzero(mask)
    centre = rows.mean(), cols.mean()
    yy, xx = np.indices(mask.shape)
    source_rows = np.clip(np.rint(centre[0] + (yy - centre[0]) / scale), 0, mask.shape[0] - 1).astype(int)
    source_cols = np.clip(np.rint(centre[1] + (xx - centre[1]) / scale), 0, mask.shape[1] - 1).astype(int)
    return mask[source_rows, source_cols]
