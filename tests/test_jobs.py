"""Regression tests of issue 10 items 1, 13, 14 and 15: feature-cache keys, concurrent labeling, resumed
prediction jobs, and the default zero-shot admission check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vlmhub.models.toy import COLOR_RGB


def _color_folder(root: Path, swap: bool) -> Path:
    """A task folder ``root/colors`` with one swatch per class; ``swap`` puts the wrong colour in each folder."""
    from PIL import Image

    classes = ["red", "blue", "green"]
    shown = ["blue", "green", "red"] if swap else classes
    for c, s in zip(classes, shown):
        (root / "colors" / c).mkdir(parents=True)
        Image.new("RGB", (16, 16), COLOR_RGB[s]).save(root / "colors" / c / "img0.png")
    (root / "colors" / "dataset.json").write_text(json.dumps({"name": "colors", "classes": classes}))
    return root / "colors"


def test_feature_cache_is_keyed_by_content_not_folder_name(settings, tmp_path):
    """Item 1: two task folders with equal <folder>/<class>/<file> names but other images get their own features."""
    from vlmhub.evaluation.evaluate import model_probabilities
    from vlmhub.models.registry import create_model
    from vlmhub.tasks import load_task, task_images

    model = create_model("toy-a", settings)
    right = load_task(_color_folder(tmp_path / "a", swap=False))
    wrong = load_task(_color_folder(tmp_path / "b", swap=True))
    ri, wi = task_images(right), task_images(wrong)
    assert ri.ids == wi.ids  # the display ids collide: exactly the situation of the issue
    p_right = model_probabilities([model], right, ri, settings)["toy-a"]
    p_wrong = model_probabilities([model], wrong, wi, settings)["toy-a"]
    assert (p_right.argmax(1) == [0, 1, 2]).all()
    assert (p_wrong.argmax(1) == [1, 2, 0]).all()  # the swapped colours, not the cached features of folder a
    # identical content is still served from the cache (one row per distinct image)
    again = model_probabilities([model], right, ri, settings)["toy-a"]
    np.testing.assert_allclose(again, p_right)
    tables = list((settings.cache_dir / "features").iterdir())
    assert len(tables) == 1
    from vlmhub.storage import EmbeddingTable

    assert len(EmbeddingTable(tables[0])) == 3  # the two folders hold the same three swatches, shuffled
