"""Helpers of the Ray tests (tests/test_ray_labeling.py, test_ray_predict.py, test_submission_ray.py): the local
cluster, a model wrapper that Ray can ship to its workers, and the stored label bytes two runs are compared by."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def local_ray():
    """The Ray tests' cluster: a local Ray of 2 CPUs with a small object store (it fits CI), shut down after."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def ship_by_value(ray, *modules) -> None:
    """Let Ray's workers unpickle classes of these test modules (and of this one): they cannot import them."""
    for m in (sys.modules[__name__], *modules):
        ray.cloudpickle.register_pickle_by_value(m)


class Delegate:
    """A model wrapper: keyword attributes of its own, every other attribute read from ``inner``."""

    def __init__(self, inner, **attrs):
        self.__dict__.update(inner=inner, **attrs)

    def __getattr__(self, name):
        if "inner" not in self.__dict__:  # while unpickling, before __dict__ is filled
            raise AttributeError(name)
        return getattr(self.__dict__["inner"], name)


def label_bytes(settings, model_ids, graph) -> dict:
    """model id → (dtype, shape and bytes of its image rows, bytes of its caption rows) in graph order; each label
    must be complete on ``graph``."""
    from vlmhub.labeling.labels import LabelStore, caption_key

    store = LabelStore(settings)
    out = {}
    for mid in model_ids:
        lab = store.label(mid)
        assert lab.is_complete(graph.version)
        img = lab.images.get(graph.image_ids())
        cap = lab.captions.get([caption_key(c) for c in graph.captions()])
        out[mid] = (img.dtype.str, img.shape, img.tobytes(), cap.tobytes())
    return out


def _die_once_then(marks: str, fn, *args):
    """Call ``fn``; but the first call after another finished anywhere publishes its process id in
    ``marks/victim`` and waits there to be killed (:class:`Killer`)."""
    import os
    import time
    import uuid
    from pathlib import Path

    where = Path(marks)
    if any(where.glob("done-*")) and not (where / "victim").exists():
        tmp = where / f"victim-{os.getpid()}"
        tmp.write_text(str(os.getpid()))
        try:
            os.link(tmp, where / "victim")  # exactly one call becomes the victim
        except FileExistsError:
            pass
        else:
            time.sleep(120)  # killed here by the test
    out = fn(*args)
    (where / f"done-{os.getpid()}-{uuid.uuid4().hex[:6]}").touch()
    return out


class DiesOnce(Delegate):
    """A model (delegated to) whose method ``method`` dies once mid-call (:func:`_die_once_then`) on ``marks``."""

    def __getattr__(self, name):
        import functools

        attr = super().__getattr__(name)
        if name != self.__dict__.get("method"):
            return attr
        return functools.partial(_die_once_then, self.__dict__["marks"], attr)


class Killer:
    """``with Killer(marks) as k:`` SIGKILLs the process that publishes itself in ``marks/victim`` (within 120 s);
    afterwards ``k.killed`` holds its pid and ``k.redone`` tells whether calls finished after the kill."""

    def __init__(self, marks):
        from pathlib import Path

        self.marks = Path(marks)
        self.killed: list[int] = []
        self.before: set = set()

    def _watch(self) -> None:
        import os
        import signal
        import time

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (self.marks / "victim").exists():
            time.sleep(0.05)
        if (self.marks / "victim").exists():
            self.before.update(self.marks.glob("done-*"))
            pid = int((self.marks / "victim").read_text())
            os.kill(pid, signal.SIGKILL)
            self.killed.append(pid)

    def __enter__(self) -> "Killer":
        import threading

        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(timeout=5)

    @property
    def redone(self) -> bool:
        return bool(set(self.marks.glob("done-*")) - self.before)
