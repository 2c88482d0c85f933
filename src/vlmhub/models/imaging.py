"""Image decoding and preprocessing shared by the built-in models and the data loaders."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ImageError

__all__ = ["load_image", "resize_center_crop", "to_tensor_normalized", "IMAGE_EXTENSIONS", "InMemoryImage", "image_files"]

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


def load_image(path: "str | os.PathLike | InMemoryImage"):
    """Decode an image file (or :class:`InMemoryImage`) as RGB; any decoding failure is an :class:`ImageError`."""
    from PIL import Image, UnidentifiedImageError

    source = io.BytesIO(path.data) if isinstance(path, InMemoryImage) else path
    try:
        with Image.open(source) as im:
            im.load()
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}. Check the path.") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
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
