"""Task descriptions: what a user tells vlmhub about a target task (MLL Section 3.2).

A task is a name, a domain, a task type and class names, optionally with captions per class. The file
format is the ``dataset.json`` of an ImageFolder::

    {"name": "cifar10-test", "domain": "natural photograph", "task": "image classification",
     "classes": ["airplane", ...], "captions": {"airplane": ["...", ...]}}   # captions optional

A *task folder* is such a file next to one sub-folder of images per class (named exactly like the class).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .errors import TaskError
from .imaging import IMAGE_EXTENSIONS
from .storage.atomic import read_json

__all__ = ["Task", "load_task", "task_from_json", "task_images", "LabeledImages", "TASK_JSON_EXAMPLE"]

#: the smallest task file `vlmhub select` (and the web task page's upload) accepts
TASK_JSON_EXAMPLE = '{"name": "pets", "classes": ["cat", "dog"], "domain": "natural photograph"}'


@dataclass(frozen=True)
class Task:
    """A validated task description (see module docstring)."""

    name: str
    classes: tuple[str, ...]
    domain: str = "natural photograph"
    task: str = "image classification"
    captions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    root: Path | None = None  # the task folder, when loaded from one

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise TaskError("the task has no name. Add a non-empty \"name\" to the task file.")
        _check_text("the task name", self.name)
        for fld in ("domain", "task"):
            v = getattr(self, fld)
            if not isinstance(v, str) or not v.strip():
                raise TaskError(f"task {self.name!r}: \"{fld}\" must be a non-empty string (got {v!r}), "
                                f"e.g. \"{'natural photograph' if fld == 'domain' else 'image classification'}\".")
            _check_text(f"the {fld} of task {self.name!r}", v)
        classes = tuple(self.classes) if not isinstance(self.classes, str) else ()
        if not classes:
            raise TaskError(f"task {self.name!r} has no classes. List at least two class names under \"classes\".")
        bad = [c for c in classes if not isinstance(c, str) or not c.strip()]
        if bad:
            raise TaskError(f"task {self.name!r} has empty or non-text class names {bad!r}. Every class must be a non-empty string.")
        seen: set[str] = set()
        dups = sorted({c for c in classes if c.strip().lower() in seen or seen.add(c.strip().lower())})
        if dups:
            raise TaskError(f"task {self.name!r} lists these classes more than once (duplicate names): {', '.join(dups)}. "
                            "Remove the duplicates.")
        if len(classes) < 2:
            raise TaskError(f"task {self.name!r} has a single class {classes[0]!r}; classification needs at least two.")
        for c in classes:
            _check_text(f"class name {c!r} of task {self.name!r}", c)
        object.__setattr__(self, "classes", classes)
        caps = {}
        if self.captions is not None and not isinstance(self.captions, Mapping):
            raise TaskError(f"\"captions\" of task {self.name!r} must be an object mapping class names to lists of "
                            f"captions, e.g. {{\"{classes[0]}\": [\"a photo of a {classes[0]}\"]}} (got {type(self.captions).__name__}).")
        for c, v in dict(self.captions or {}).items():
            if c not in classes:
                raise TaskError(f"task {self.name!r} has captions for {c!r}, which is not one of its classes. Fix the class name.")
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in v):
                raise TaskError(f"captions of class {c!r} in task {self.name!r} must be non-empty strings.")
            for x in v:
                _check_text(f"a caption of class {c!r}", x)
            caps[c] = tuple(v)
        object.__setattr__(self, "captions", caps)

    @classmethod
    def from_dict(cls, d: Mapping, root: Path | None = None) -> "Task":
        if not isinstance(d, Mapping):
            raise TaskError("a task must be a JSON object with \"name\" and \"classes\".")
        unknown = set(d) - {"name", "classes", "domain", "task", "captions", "kind", "source", "description"}
        if unknown:
            raise TaskError(f"unknown task field(s) {sorted(unknown)}. Allowed: name, classes, domain, task, captions.")
        classes = d.get("classes") or ()
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
            raise TaskError("\"classes\" must be a list of class-name strings, e.g. [\"cat\", \"dog\"].")
        return cls(
            name=d.get("name", ""),
            classes=tuple(classes),
            domain=d["domain"] if d.get("domain") not in (None, "") else "natural photograph",
            task=d["task"] if d.get("task") not in (None, "") else "image classification",
            captions={} if d.get("captions") is None else d["captions"],
            root=root,
        )

    def to_dict(self) -> dict:
        d = {"name": self.name, "domain": self.domain, "task": self.task, "classes": list(self.classes)}
        if self.captions:
            d["captions"] = {k: list(v) for k, v in self.captions.items()}
        return d


def _check_text(what: str, text: str) -> None:
    """Refuse text that cannot be encoded as UTF-8 (e.g. a lone UTF-16 surrogate from a JSON ``\\ud800``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TaskError(f"{what} contains a character that is not valid Unicode text ({exc.reason} at position "
                        f"{exc.start}, e.g. a lone surrogate). Use plain UTF-8 text.") from None


def load_task(path: str | Path) -> Task:
    """Load a task from a JSON file or from a task folder containing ``dataset.json``."""
    path = Path(path)
    if path.is_dir():
        root, file = path, path / "dataset.json"
        if not file.is_file():
            raise TaskError(f"{path} has no dataset.json. Add one with name, domain, task and classes.")
    else:
        root, file = None, path
        if not file.is_file():
            raise TaskError(f"task file {path} does not exist (not found). Pass a task JSON file or a folder with dataset.json.")
    data = read_json(file, "task file", TaskError)
    if isinstance(data, Mapping) and data.get("kind") == "concept-samples":
        raise TaskError(f"{file} describes a concept-sample set (wnid folders), not a target task.")
    return Task.from_dict(data, root=root)


def task_from_json(data: bytes | str, what: str = "the task file") -> Task:
    """A task from the text of a task JSON file (the schema of :func:`load_task`: ``name``, ``classes`` and
    optional ``domain``, ``task``, ``captions``), e.g. an uploaded file; every problem is a
    :class:`~vlmhub.errors.TaskError` naming the fix."""
    import json

    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TaskError(f"{what} is not UTF-8 text (byte {exc.start}). Save it as UTF-8 JSON, e.g. "
                            f"{TASK_JSON_EXAMPLE}") from None
    if not data.strip():
        raise TaskError(f"{what} is empty. It must be a JSON object like {TASK_JSON_EXAMPLE}")
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        raise TaskError(f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
                        f"Fix it; a task file looks like {TASK_JSON_EXAMPLE}") from None
    if isinstance(obj, Mapping) and obj.get("kind") == "concept-samples":
        raise TaskError(f"{what} describes a concept-sample set (wnid folders), not a target task.")
    if not isinstance(obj, Mapping):
        raise TaskError(f"{what} holds a JSON {type(obj).__name__}, not an object. A task file looks like "
                        f"{TASK_JSON_EXAMPLE}")
    return Task.from_dict(obj)


@dataclass(frozen=True)
class LabeledImages:
    """Images of a task folder with their class indices."""

    ids: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: tuple[int, ...]

    def refs(self) -> list[tuple[str, Path]]:
        return list(zip(self.ids, self.paths))

    def __len__(self) -> int:
        return len(self.ids)


def task_images(task: Task, *, limit_per_class: int | None = None, seed: int = 0) -> LabeledImages:
    """List the images of a task folder (``<root>/<class>/<image>``), optionally a seeded subset per class."""
    if task.root is None:
        raise TaskError(f"task {task.name!r} was not loaded from a folder, so it has no images. Pass the task folder.")
    if limit_per_class is not None and (isinstance(limit_per_class, bool) or not isinstance(limit_per_class, int)
                                        or limit_per_class < 1):
        raise TaskError(f"the limit of images per class must be a whole number >= 1 (got {limit_per_class!r}); "
                        "omit it to use every image.")
    ids, paths, labels = [], [], []
    for ci, c in enumerate(task.classes):
        d = task.root / c
        if not d.is_dir():
            raise TaskError(f"task folder {task.root} has no sub-folder for class {c!r}. Create {d} with its images.")
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if limit_per_class is not None and len(files) > limit_per_class:
            files = sorted(random.Random(f"{seed}:{c}").sample(files, limit_per_class))
        for f in files:
            ids.append(f"{task.root.name}/{c}/{f.name}")
            paths.append(f)
            labels.append(ci)
    if not ids:
        raise TaskError(f"task folder {task.root} has no images. Put images in its class folders.")
    return LabeledImages(tuple(ids), tuple(paths), tuple(labels))
