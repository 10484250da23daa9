"""NIfTI volumes and masks (nibabel): slices as 8-bit RGB, with the in-plane spacing in mm.

A volume of shape (I, J, K) gives K slices: slice k is `data[:, :, k]`, so its rows follow the
first voxel axis and its columns the second, and its pixel spacing is the header's first two
zooms (row, column), in mm. 2D files (I, J) are one slice; 4D files with one volume are read as 3D.

Intensities: NIfTI stores no display window, so each volume is scaled from its 0.5th to its 99.5th
percentile onto 0..255 (values outside are clipped). One scale per volume keeps its slices alike,
and the percentiles keep a few extreme voxels (metal, air in CT) from washing out the rest.

A mask volume has the image's shape and affine; nonzero voxels are inside. Where it holds several
labels (e.g. 1 organ, 2 tumour) each label in a slice is its own lesion, of class "label N".

Needs `pip install keras-sam[nifti]` (nibabel).
"""

import dataclasses

import numpy as np

from keras_sam.data.errors import DataError

NIFTI_EXTENSIONS = (".nii.gz", ".nii")
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
AFFINE_TOLERANCE = 1e-3  # mm: rounding in a header, well below any voxel size


@dataclasses.dataclass(frozen=True)
class NiftiVolume:
    """What `read_nifti` returns.

    Attributes:
        data: (I, J, K) array as stored (float or integer).
        affine: (4, 4) voxel-to-world matrix.
        spacing: (row, column) in-plane voxel size in mm, or None if the header's is unusable.
        spacing_problem: why the header's spacing can't be used, else None.
    """

    data: np.ndarray
    affine: np.ndarray
    spacing: object
    spacing_problem: object


def is_nifti(path):
    """True for a file name ending in .nii or .nii.gz."""
    return str(path).lower().endswith(NIFTI_EXTENSIONS)


def nifti_stem(name):
    """'case_001.nii.gz' -> 'case_001'."""
    for extension in NIFTI_EXTENSIONS:
        if name.lower().endswith(extension):
            return name[: -len(extension)]
    return name


def read_nifti(path):
    """Reads a NIfTI file as a 3D volume with its affine and in-plane spacing.

    Args:
        path: a .nii or .nii.gz file.

    Returns:
        NiftiVolume.

    Raises:
        DataError: unreadable, or more than one volume in a 4D file.
    """
    try:
        import nibabel
    except ImportError:
        raise DataError("reading NIfTI needs nibabel: pip install keras-sam[nifti]") from None
    try:
        image = nibabel.load(path)
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for truncated or foreign files
        raise DataError(f"{path} cannot be read as NIfTI ({error})") from error
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise DataError(f"{path} holds data of shape {data.shape}; keras-sam reads 2D images and 3D "
                        "volumes (split a 4D series into 3D files)")
    # The header stores float32: 0.8 comes back as 0.800000011920929 unless rounded.
    zooms = tuple(float(f"{float(z):.6g}") for z in image.header.get_zooms()[:2])
    if len(zooms) == 2 and all(np.isfinite(z) and z > 0 for z in zooms):
        spacing, problem = zooms, None
    else:
        spacing, problem = None, f"its header's voxel size (pixdim) is {zooms}"
    return NiftiVolume(data, np.asarray(image.affine, float), spacing, problem)


def to_uint8(data):
    """A volume's intensities onto 0..255 between its 0.5th and 99.5th percentiles (module notes)."""
    values = np.asarray(data, np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape, np.uint8)
    low, high = np.percentile(finite, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    scaled = (np.nan_to_num(values, nan=low) - low) / (high - low) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def grid_of(volume):
    """(shape, affine) of a NiftiVolume: what a mask must share with its image."""
    return volume.data.shape, volume.affine


def check_same_grid(image_path, image_grid, mask_path, mask_grid):
    """Raises DataError unless the mask's grid (shape, affine) is its image's (see `grid_of`)."""
    (image_shape, image_affine), (mask_shape, mask_affine) = image_grid, mask_grid
    if mask_shape != image_shape:
        raise DataError(f"{mask_path} has shape {mask_shape} but its image {image_path} has {image_shape}")
    difference = float(np.abs(mask_affine - image_affine).max())
    if difference > AFFINE_TOLERANCE:
        raise DataError(f"{mask_path} has an affine that differs from its image {image_path}'s "
                        f"(by up to {difference:.3g}): the mask is in another space; resample it "
                        "onto the image's grid")
