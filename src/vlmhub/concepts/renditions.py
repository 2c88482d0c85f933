"""Renditions of concept-sample images: the same concept seen under other imaging conditions.

A model's label measures it on the graph's sample images. Targets are often shot differently (CIFAR and GTSRB
at 32x32, FER2013 and MNIST grey and small), and an ImageNet-trained backbone may have memorised the ImageNet-
derived samples in their original form. vlmhub therefore can label each sample image under several renditions
and, at selection time, read the label under the rendition that matches the task's stated domain
(``rendition="auto"``). This is a vlmhub extension of MLL: it still uses only the task description.

Rendition ids are appended to image ids as ``<image id>@<rendition>``; ``original`` keeps the plain id, so
labels computed before renditions existed stay valid.
"""

from __future__ import annotations

import re
from enum import Enum

__all__ = ["Rendition", "render", "rendition_for_domain", "rendered_id"]


class Rendition(str, Enum):
    ORIGINAL = "original"
    LOWRES32 = "lowres32"  # down to 32 px on the short side, as CIFAR / GTSRB
    GRAY = "gray"  # grey-scale, as FER2013 / MNIST
    GRAY_LOWRES48 = "gray48"  # grey and 48 px, as FER2013


def render(image, rendition: "Rendition | str"):
    """Apply a rendition to a PIL RGB image (the model's own preprocessing runs afterwards)."""
    from PIL import Image

    r = Rendition(rendition)
    if r is Rendition.ORIGINAL:
        return image
    if r in (Rendition.GRAY, Rendition.GRAY_LOWRES48):
        image = image.convert("L").convert("RGB")
    side = {Rendition.LOWRES32: 32, Rendition.GRAY_LOWRES48: 48}.get(r)
    if side:
        w, h = image.size
        s = side / min(w, h)
        if s < 1:
            image = image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    return image


def rendered_id(image_id: str, rendition: "Rendition | str") -> str:
    r = Rendition(rendition)
    return image_id if r is Rendition.ORIGINAL else f"{image_id}@{r.value}"


_GRAY = re.compile(r"\b(gr[ae]y|grayscale|greyscale|black[- ]and[- ]white|monochrome)\b", re.I)
_SIZE = re.compile(r"\b(\d{2,3})\s*[x×]\s*(\d{2,3})\b")


def rendition_for_domain(domain: str) -> Rendition:
    """The rendition that matches a task's domain text: grey and/or low resolution when the text says so."""
    gray = bool(_GRAY.search(domain or ""))
    m = _SIZE.search(domain or "")
    small = m is not None and min(int(m.group(1)), int(m.group(2))) <= 64
    lowres_words = re.search(r"\b(low[- ]resolution|thumbnail|tiny)\b", domain or "", re.I) is not None
    if gray and (small or lowres_words):
        return Rendition.GRAY_LOWRES48
    if gray:
        return Rendition.GRAY
    if small or lowres_words:
        return Rendition.LOWRES32
    return Rendition.ORIGINAL
