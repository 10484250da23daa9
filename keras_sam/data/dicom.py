"""DICOM images and masks (pydicom): frames as 8-bit RGB, with the pixel spacing in mm.

Intensities, in the order DICOM defines them:
1. the Modality LUT (RescaleSlope and RescaleIntercept), e.g. CT values in Hounsfield units;
2. the first VOI window of the file (WindowCenter and WindowWidth, DICOM's linear function) when it
   has one; otherwise the lowest to the highest value over all frames of the file, so the frames of
   a cine loop share one scale;
3. MONOCHROME1 (white is low) is inverted; colour images (RGB, YBR, palette) come out as RGB and
   8-bit colour is kept as stored (other depths are scaled to 0..255).

Pixel spacing, (row, column) in mm: PixelSpacing (0028,0030); for ultrasound without it, the first
region of SequenceOfUltrasoundRegions whose physical units are cm (PhysicalDeltaY, PhysicalDeltaX);
otherwise unknown (None).

Needs `pip install keras-sam[dicom]` (pydicom). Compressed transfer syntaxes need a decoder package
(named in the error when it is missing).
"""

import dataclasses
import os

import numpy as np

from keras_sam.data.errors import DataError

DICOM_EXTENSIONS = (".dcm", ".dicom")

# pip packages that decode each compressed transfer syntax family for pydicom.
_DECODERS = (
    ("JPEG-LS", "pyjpegls"),
    ("JPEG 2000", "pylibjpeg pylibjpeg-openjpeg"),
    ("JPEG", "pylibjpeg pylibjpeg-libjpeg"),
    ("RLE", "pylibjpeg pylibjpeg-rle"),
)
_CENTIMETRES = 3  # PhysicalUnitsX/YDirection code for cm in an ultrasound region


@dataclasses.dataclass(frozen=True)
class DicomFrames:
    """What `read_dicom` returns.

    Attributes:
        frames: (F, H, W, 3) uint8 RGB, one entry per frame (F is 1 for a single image).
        spacing: (row, column) pixel size in mm, or None when the file has none.
        spacing_problem: why the file's spacing can't be used (e.g. it is 0), else None.
    """

    frames: np.ndarray
    spacing: object
    spacing_problem: object


def is_dicom(path):
    """True for a DICOM file: a .dcm or .dicom name, or a file without an extension (as archives
    export them, e.g. IM0001) that starts with DICOM's preamble and "DICM" marker."""
    path = str(path)
    if path.lower().endswith(DICOM_EXTENSIONS):
        return True
    if os.path.splitext(os.path.basename(path))[1] or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise DataError("reading DICOM needs pydicom: pip install keras-sam[dicom]") from None
    return pydicom


def _dataset(path):
    pydicom = _pydicom()
    try:
        return pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise DataError(f"{path} cannot be read as DICOM ({error})") from error


def _raw_pixels(path, dataset):
    """The stored pixels as a numpy array, (F, H, W[, 3]), with one-line errors for what's missing."""
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise DataError(f"{path} has no pixel data (a DICOM without an image, e.g. a report or "
                        "structured data): leave it out or pass --skip-bad-files")
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            available = get_decoder(syntax).is_available
        except NotImplementedError:
            available = False
        if not available:
            package = next((name for family, name in _DECODERS if family in syntax.name), "python-gdcm")
            raise DataError(f"{path} is compressed ({syntax.name}) and no decoder for it is installed: "
                            f"pip install {package}")
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for corrupt or unsupported pixel data
        raise DataError(f"{path} has pixel data that cannot be decoded ({error})") from error
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    colour = int(getattr(dataset, "SamplesPerPixel", 1) or 1) > 1
    if frames == 1:
        pixels = pixels[None]
    if pixels.ndim != (4 if colour else 3):
        raise DataError(f"{path} has pixel data of unexpected shape {pixels.shape}")
    return pixels, colour


def _window(dataset):
    """The file's first VOI window as (centre, width), or None."""
    centre, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if centre is None or width is None:
        return None
    centre, width = _first(centre), _first(width)
    return (centre, width) if width >= 1 else None


def _first(value):
    # A multi-valued window lists alternatives; the first is the one to show by default.
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        value = list(value)[0]
    return float(value)


def _to_uint8(values, window):
    values = values.astype(np.float64)
    if window is not None:
        # DICOM PS3.3 C.11.2.1.2.1, the linear VOI function, onto 0..255.
        centre, width = window
        scaled = ((values - (centre - 0.5)) / (width - 1) + 0.5) * 255.0
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _colour_to_uint8(pixels):
    # Colour is scaled by its bit depth, not stretched: its values mean colours, not intensities.
    top = np.iinfo(pixels.dtype).max if np.issubdtype(pixels.dtype, np.integer) else float(pixels.max() or 1)
    return np.clip(np.rint(pixels.astype(np.float64) / top * 255.0), 0, 255).astype(np.uint8)


def spacing_of(dataset):
    """The (row, column) pixel spacing in mm of a pydicom dataset and, if unusable, why.

    Returns:
        (spacing, problem): spacing a tuple of two floats or None; problem a short text when the
        file states a spacing that is not two positive numbers, else None.
    """
    if "PixelSpacing" in dataset:
        raw = dataset.PixelSpacing
        try:
            values = tuple(float(v) for v in raw)
        except (TypeError, ValueError):
            values = ()
        if len(values) == 2 and all(np.isfinite(v) and v > 0 for v in values):
            return values, None
        return None, f"PixelSpacing is {raw!s}"
    for region in dataset.get("SequenceOfUltrasoundRegions", []) or []:
        units = (region.get("PhysicalUnitsXDirection"), region.get("PhysicalUnitsYDirection"))
        if units == (_CENTIMETRES, _CENTIMETRES):
            delta_x, delta_y = (float(region.get(name, 0) or 0) for name in ("PhysicalDeltaX", "PhysicalDeltaY"))
            if delta_x > 0 and delta_y > 0:
                return (abs(delta_y) * 10.0, abs(delta_x) * 10.0), None
            return None, f"the ultrasound region's PhysicalDeltaX/Y are {delta_x}/{delta_y}"
    return None, None


def read_dicom(path):
    """Reads a DICOM image (one frame or a multi-frame cine) as 8-bit RGB frames and its spacing.

    Args:
        path: a DICOM file.

    Returns:
        DicomFrames.

    Raises:
        DataError: unreadable, no pixel data, a compressed transfer syntax without its decoder.
    """
    dataset = _dataset(path)
    pixels, colour = _raw_pixels(path, dataset)
    if str(dataset.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels, colour = apply_color_lut(pixels, dataset), True
    if colour:
        frames = pixels if pixels.dtype == np.uint8 else _colour_to_uint8(pixels)
    else:
        from pydicom.pixels import apply_modality_lut

        values = apply_modality_lut(pixels, dataset)
        frames = _to_uint8(values, _window(dataset))
        if str(dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
            frames = 255 - frames
        frames = np.repeat(frames[..., None], 3, axis=-1)
    spacing, problem = spacing_of(dataset)
    return DicomFrames(np.ascontiguousarray(frames), spacing, problem)


def read_dicom_mask(path):
    """Reads a mask stored as a DICOM image: nonzero pixels are inside.

    Args:
        path: a DICOM file whose pixels are the mask (one frame, or one per frame of its image).

    Returns:
        (F, H, W) integer array of the stored values (0 outside).
    """
    dataset = _dataset(path)
    if str(dataset.get("SOPClassUID", "")) == "1.2.840.10008.5.1.4.1.1.66.4":
        raise DataError(f"{path} is a DICOM SEG object, which keras-sam does not read yet: save the "
                        "mask as PNG, NIfTI or a plain DICOM image")
    pixels, colour = _raw_pixels(path, dataset)
    return pixels.max(axis=-1) if colour else pixels
