"""Task files: validation with errors that name the problem and the fix."""

import json

import pytest

from vlmhub.errors import ImageError, TaskError
from vlmhub.imaging import load_image
from vlmhub.tasks import Task, load_task, task_images


@pytest.mark.parametrize(
    "body, message",
    [
        ({"name": "t", "classes": []}, "no classes"),
        ({"name": "t", "classes": ["cat", "dog", "Cat"]}, "more than once.*: Cat"),
        ({"name": "t", "classes": "cat"}, "must be a list"),
        ({"name": "t", "classes": ["cat"]}, "at least two"),
        ({"name": "", "classes": ["a", "b"]}, "no name"),
        ({"name": "t", "classes": ["a", ""]}, "empty or non-text"),
        ({"name": "t", "classes": ["a", "b"], "colour": 1}, "unknown task field"),
        ({"name": "t", "classes": ["a", "b"], "captions": {"c": ["x"]}}, "not one of its classes"),
    ],
)
def test_bad_tasks(tmp_path, body, message):
    f = tmp_path / "task.json"
    f.write_text(json.dumps(body))
    with pytest.raises(TaskError, match=message):
        load_task(f)


def test_missing_and_malformed_task_files(tmp_path):
    with pytest.raises(TaskError, match="not found"):
        load_task(tmp_path / "nope.json")
    f = tmp_path / "bad.json"
    f.write_text('{"name": "x", classes: []}')
    with pytest.raises(TaskError, match="not valid JSON"):
        load_task(f)
    with pytest.raises(TaskError, match="has no dataset.json"):
        load_task(tmp_path)


def test_task_folder_images_and_subset(color_data):
    task = load_task(color_data["task"])
    assert task.classes[0] == "red" and task.domain == "color swatch"
    imgs = task_images(task)
    assert len(imgs) == 60 and imgs.labels[:10] == (0,) * 10
    sub = task_images(task, limit_per_class=3, seed=1)
    assert len(sub) == 18
    assert sub == task_images(task, limit_per_class=3, seed=1)  # deterministic


def test_captions_are_validated():
    t = Task("t", ("a", "b"), captions={"a": "one caption"})
    assert t.captions["a"] == ("one caption",)


def test_corrupt_image_is_named(tmp_path):
    f = tmp_path / "broken.jpg"
    f.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        load_image(f)
