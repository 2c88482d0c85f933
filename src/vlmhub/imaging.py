"""Image decoding and preprocessing shared by the built-in models and the data loaders."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ImageError

__all__ = ["load_image", "to_rgb", "resize_center_crop", "to_tensor_normalized", "IMAGE_EXTENSIONS", "InMemoryImage",
           "image_files", "DECODE_VERSION", "DEFAULT_MAX_IMAGE_PIXELS"]

#: Bumped whenever decoding changes the pixels a model sees; part of every feature-cache key (models.runner).
#: 2: EXIF orientation applied, 16-bit/32-bit/float greyscale scaled instead of clipped, alpha composited on white.
DECODE_VERSION = 2

#: Largest image (width x height) decoded unless ``Settings.max_image_pixels`` / ``VLMHUB_MAX_IMAGE_PIXELS`` says otherwise.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def image_files(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files named by ``items``: files as given, folders searched recursively (sorted, by extension)."""
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS))
        elif p.is_file():
            files.append(p)
        else:
            raise ImageError(f"image or folder not found: {p}. Check the path.")
    if not files:
        raise ImageError("no images to classify. Pass image files or folders that contain images.")
    return files


@dataclass(frozen=True)
class InMemoryImage:
    """Encoded image bytes (an upload) with a name for messages; usable wherever an image path is."""

    name: str
    data: bytes = b""

    def __str__(self) -> str:
        return self.name


def load_image(path: "str | os.PathLike | InMemoryImage", max_pixels: int | None = None):
    """Decode an image file (or :class:`InMemoryImage`) as 8-bit RGB (see :func:`to_rgb`).

    The pixel count is read from the header and checked against ``max_pixels`` (default: the process settings'
    ``max_image_pixels``, :data:`DEFAULT_MAX_IMAGE_PIXELS` unless ``VLMHUB_MAX_IMAGE_PIXELS`` is set) *before* the pixels are decoded, so a decompression bomb costs nothing.
    Any failure is an :class:`ImageError` naming the file and the fix.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    if max_pixels is None:
        from .settings import get_settings

        max_pixels = get_settings().max_image_pixels
    limit = int(max_pixels)
    source = io.BytesIO(path.data) if isinstance(path, InMemoryImage) else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit is checked below
            with Image.open(source) as im:
                w, h = im.size
                if w * h > limit:
                    raise ImageError(
                        f"image {path} has {w} x {h} = {w * h:,} pixels, above the limit of {limit:,}. Send a smaller "
                        "image, or raise the limit with VLMHUB_MAX_IMAGE_PIXELS (Settings.max_image_pixels)."
                    )
                im.load()
                return to_rgb(im)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}. Check the path.") from None
    except Image.DecompressionBombError:
        raise ImageError(f"image {path} is larger than Pillow's decompression-bomb limit. Send a smaller image.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot decode image {path} ({exc}). Remove or replace the file.") from None


def to_rgb(im):
    """A decoded PIL image as the 8-bit RGB image a person would see.

    * EXIF orientation is applied (a phone photo stored sideways is turned upright).
    * 16-bit greyscale (``I;16*``, and ``I`` as Pillow decodes 16-bit PNGs) is scaled from 0..65535 to 0..255
      (``v / 257``, rounded); Pillow's own ``convert`` clips it, so nearly every 16-bit image became white.
    * Float greyscale (``F``) in [0, 1] is scaled by 255; other float ranges are clipped to 0..255.
    * Transparency (RGBA, LA, PA, palette with a transparent index) is composited onto white.
    * Everything else (L, 1, P, CMYK, YCbCr, LAB, HSV) goes through Pillow's colour conversion.
    """
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float64)
        grey = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def resize_center_crop(image, size: int, crop_fraction: float = 0.875):
    """Resize the short side to ``size / crop_fraction`` (bicubic), then crop the centre ``size`` x ``size``."""
    from PIL import Image

    w, h = image.size
    short = max(size, int(round(size / crop_fraction)))
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_tensor_normalized(image, mean: Sequence[float], std: Sequence[float]):
    """PIL RGB -> float tensor (3, H, W), scaled to [0, 1] then normalised per channel."""
    import torch

    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
