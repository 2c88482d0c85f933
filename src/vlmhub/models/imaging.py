"""Image decoding and preprocessing shared by the built-in models and the data loaders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ImageError

__all__ = ["load_image", "resize_center_crop", "to_tensor_normalized", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def load_image(path: str | os.PathLike):
    """Decode an image file as RGB, turning any decoding failure into an :class:`ImageError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}. Check the path.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot decode image {path} ({exc}). Remove or replace the file.") from None


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
