"""Image values at their real bit depth, mapped to the prepared uint8 by one documented rule.

- uint8: kept as is.
- other integers (uint16, int16, int32, ...) and floats whose values all lie in 0..255 (floats:
  whole numbers): kept as is, exactly.
- floats in [0, 1]: scaled by 255 and rounded (the usual normalised-image convention).
- unsigned 16-bit data (uint16 arrays, 16-bit PNGs) beyond 255: scaled from the full 16-bit
  range, value * 255 / 65535, rounded.
- anything else (signed or 32-bit integers beyond 255, e.g. CT Hounsfield units; floats beyond
  255):
  refused, naming the dtype and the observed range, unless ``options.value_range: [low, high]``
  is set; values are then clipped to that window and scaled linearly to 0..255.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medflow.errors import DataError

UINT16_MAX = 65535.0


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    window = np.clip(values.astype(np.float64), low, high)
    return np.round((window - low) * (255.0 / (high - low))).astype(np.uint8)


def _check_window(value_range: Sequence[float], where: str) -> tuple[float, float]:
    low, high = (float(v) for v in value_range)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise DataError(f"{where}: options.value_range {list(value_range)} must be [low, high]")
    return low, high


def to_uint8(
    images: np.ndarray, where: str, value_range: Sequence[float] | None = None
) -> np.ndarray:
    """``images`` as uint8 by the module's rule; ``where`` names the file in errors."""
    if value_range is not None:
        return _scaled(images, *_check_window(value_range, where))
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.bool_:
        return images.astype(np.uint8) * 255
    if images.size == 0:
        return images.astype(np.uint8)
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise DataError(f"{where}: images of dtype {images.dtype} are not pixel values")
    low, high = float(np.min(images)), float(np.max(images))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise DataError(f"{where}: images ({images.dtype}) contain NaN or infinite values")
    floating = np.issubdtype(images.dtype, np.floating)
    if floating and low >= 0.0 and high <= 1.0:
        return np.round(images.astype(np.float64) * 255.0).astype(np.uint8)
    whole = not floating or bool(np.all(images == np.round(images)))
    if low >= 0.0 and high <= 255.0 and whole:
        return images.astype(np.uint8)
    if images.dtype == np.uint16:
        return _scaled(images, 0.0, UINT16_MAX)
    raise DataError(
        f"{where}: images of dtype {images.dtype} range {low:g}..{high:g}, which has no "
        "unambiguous 8-bit mapping; set options.value_range: [low, high] (e.g. a CT window) "
        "to clip and scale them to 0..255"
    )
