"""Checking and preparing the arrays the embedding API is given (numpy; soxr; PIL).

Audio: any sample rate (resampled to the encoder's with soxr, as
`l3.media` does for files), 1-D [samples] or 2-D [samples, channels]
(openl3's layout; channels are averaged), float or integer PCM. Images:
[H, W] grey, [H, W, 1|3|4], or a batch [N, H, W, C]; uint8 / uint16 or
float in [0, 1]; grey is replicated to RGB and an alpha channel dropped
(what PIL's `convert("RGB")` does, and openl3). Images whose smaller side is
more than `LARGE_FACTOR` times the resize side are first box-averaged by an
integer factor (an exact anti-aliasing step; it keeps the final bilinear
resize from reading a 100-megapixel array).

Each problem raises `InputError` naming the input ("audio[2]", a path) with
a stable `reason`; a call over many inputs checks them all first and raises
`InputErrors` listing every bad one before any encoder work.
"""

import os
import warnings
from typing import List, Optional, Sequence

import numpy as np
import soxr
from PIL import Image, ImageOps

from l3 import media

LARGE_FACTOR = 4  # images with smaller side > 4 x resize side are box-reduced first

REASONS = {
    "empty_audio": "no samples",
    "non_finite": "NaN or infinite values",
    "bad_shape": "an array layout the API does not take",
    "bad_dtype": "a sample or pixel type the API does not take",
    "bad_sample_rate": "the sample rate is not a positive number",
    "out_of_range": "float image values outside [0, 1]",
    "image_too_large": "more pixels than PIL decodes safely (a decompression bomb)",
    "empty_image": "no pixels",
    "output_collision": "two inputs of one call would write the same output file",
}


class InputError(ValueError):
    """One input that cannot be embedded: `name` (e.g. "audio[2]" or a path), `reason`."""

    def __init__(self, name: str, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(f"{name}: {reason}: {message}")
        self.name, self.reason, self.message = name, reason, message

    def __reduce__(self):
        return (InputError, (self.name, self.reason, self.message))


class InputErrors(ValueError):
    """Several bad inputs of one call, one line each; `errors` is the list of `InputError`."""

    def __init__(self, errors: Sequence[InputError]):
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} bad input(s):\n" + "\n".join(map(str, self.errors)))


class ShortAudioWarning(UserWarning):
    """Audio shorter than one encoder window: it was zero-padded."""


def raise_all(errors: List[InputError]) -> None:
    """Raises the one error, or `InputErrors` for several, or nothing."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InputErrors(errors)


def check_finite(x: np.ndarray, name: str, what: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(name, "non_finite", f"{int(bad.sum())} NaN/inf {what} "
                         f"(first at flat index {first})")


def prepare_audio(audio, sr, rate: int, name: str) -> np.ndarray:
    """One audio array -> float32 mono [samples] at `rate`.

    Args:
      audio: [samples] or [samples, channels]; float (nominally [-1, 1]) or
        integer PCM (scaled by the type's range). A tf.Tensor works too.
      sr: its sample rate in Hz (any positive number).
    Raises:
      InputError: empty, NaN/inf, 3-D or [channels, samples]-looking arrays,
        bad dtype or rate.
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, float, np.number)) or not sr > 0 \
            or not np.isfinite(sr):
        raise InputError(name, "bad_sample_rate", f"sample rate must be a positive number, got {sr!r}")
    x = np.asarray(audio)
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        x = (x.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    elif x.dtype.kind != "f":
        raise InputError(name, "bad_dtype", f"audio must be float or integer PCM, got {x.dtype}")
    if x.ndim == 2:
        if x.shape[1] > x.shape[0]:
            raise InputError(name, "bad_shape", f"shape {x.shape} looks like [channels, samples]; "
                             "pass [samples, channels] (audio.T)")
        x = x.mean(axis=1)
    elif x.ndim != 1:
        raise InputError(name, "bad_shape", f"audio must be [samples] or [samples, channels], "
                         f"got shape {x.shape}")
    if x.size == 0:
        raise InputError(name, "empty_audio", "the audio has no samples")
    check_finite(x, name, "samples")
    x = x.astype(np.float32)
    if sr != rate:
        x = soxr.resample(x, float(sr), rate, quality="HQ").astype(np.float32, copy=False)
    return x


def warn_if_short(num_samples: int, window: int, rate: int, name: str) -> None:
    if num_samples < window:
        warnings.warn(f"{name}: {num_samples / rate:.3f} s of audio is shorter than one "
                      f"{window / rate:g} s window; zero-padded", ShortAudioWarning, stacklevel=3)


def image_stack(images, name: str) -> np.ndarray:
    """One image or batch -> [N, H, W, C] with C in (1, 3, 4), original dtype."""
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None, :, :, None]
    elif x.ndim == 3:
        if x.shape[-1] not in (1, 3, 4):
            raise InputError(name, "bad_shape", f"a 3-D image must be [H, W, 1|3|4], got {x.shape} "
                             "(a batch of grey images: add a channel axis)")
        x = x[None]
    elif x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise InputError(name, "bad_shape", f"images must be [H, W], [H, W, C] or [N, H, W, C] "
                         f"with C in 1, 3, 4; got {x.shape}")
    if x.size == 0:
        raise InputError(name, "empty_image", f"no pixels (shape {x.shape})")
    return x


def check_pixels(x: np.ndarray, name: str) -> np.ndarray:
    """Raises InputError unless x is uint8, uint16, or finite float in [0, 1]; returns x."""
    if x.dtype == np.uint8 or x.dtype == np.uint16:
        return x
    if x.dtype.kind != "f":
        raise InputError(name, "bad_dtype", f"images must be uint8, uint16 or float in [0, 1], "
                         f"got {x.dtype}")
    check_finite(x, name, "pixels")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(name, "out_of_range", f"float images must be in [0, 1], got values in "
                         f"[{lo:g}, {hi:g}] (uint8 images are scaled automatically)")
    return x


def to_unit_rgb(x: np.ndarray, name: str) -> np.ndarray:
    """[N, H, W, C] uint8/uint16/float -> float32 [N, H, W, 3] in [0, 1] (grey -> RGB, alpha dropped)."""
    check_pixels(x, name)
    if x.dtype.kind == "f":
        y = x.astype(np.float32)
    else:
        y = x.astype(np.float32) / np.float32(np.iinfo(x.dtype).max)
    if y.shape[-1] == 1:
        y = np.repeat(y, 3, axis=-1)
    return y[..., :3]


def box_reduce(image: np.ndarray, resize_side: int) -> np.ndarray:
    """float [H, W, 3] -> the mean of f x f blocks when min(H, W) > LARGE_FACTOR * resize_side.

    f = min(H, W) // (2 * resize_side), so the result keeps at least twice the
    resize side and the final antialiased resize still does the real work.
    """
    side = min(image.shape[:2])
    if side <= LARGE_FACTOR * resize_side:
        return image
    f = side // (2 * resize_side)
    h, w = (image.shape[0] // f) * f, (image.shape[1] // f) * f
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    crop = image[top:top + h, left:left + w]
    return crop.reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3), dtype=np.float32)


def eval_view(image: np.ndarray, resize_side: int, image_size: int) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1] -> [image_size, image_size, 3]: the evaluation view.

    Smaller side to `resize_side` (antialiased bilinear), central crop: the
    transform the encoder was evaluated with (`l3.ops.image.eval_image`).
    """
    from l3.ops import image as image_lib  # TensorFlow: imported on first image, not with l3
    return np.asarray(image_lib.eval_image(box_reduce(image, resize_side),
                                           resize_side=resize_side, image_size=image_size))


def read_image_file(path: str, resize_side: int) -> np.ndarray:
    """An image file -> uint8 [H, W, 3] upright (EXIF), grey/RGBA/palette to RGB.

    Very large files are decoded reduced (JPEG draft mode and PIL's integer
    `reduce`) to at most about LARGE_FACTOR x the resize side; files over
    PIL's decompression-bomb limit (2 x `PIL.Image.MAX_IMAGE_PIXELS`, ~179
    megapixels) are refused. Raises MediaError (not_found, empty_file,
    unreadable) or InputError (image_too_large).
    """
    if not os.path.exists(path):
        raise media.MediaError("not_found", f"{path} does not exist")
    if os.path.getsize(path) == 0:
        raise media.MediaError("empty_file", f"{path} has zero bytes")
    try:
        with Image.open(path) as im:
            side = min(im.size)
            if side > LARGE_FACTOR * resize_side:
                f = side // (2 * resize_side)
                im.draft("RGB", (im.width // f, im.height // f))  # JPEG: decode at 1/2..1/8
                f = min(im.size) // (2 * resize_side)
                if f > 1:
                    im = im.reduce(f)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
            return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise InputError(path, "image_too_large", str(e)) from None
    except (OSError, ValueError, SyntaxError) as e:  # UnidentifiedImageError is an OSError
        raise media.MediaError("unreadable", f"cannot read image {path}: {e}") from None


def names(prefix: str, count: int, single: bool) -> List[str]:
    return [prefix] if single else [f"{prefix}[{i}]" for i in range(count)]


def optional_list(value, count: int, what: str) -> List[Optional[float]]:
    """A scalar broadcast to `count`, or a list of that length."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{len(value)} {what} values for {count} inputs")
        return list(value)
    return [value] * count
