"""A resumable prediction job: classify many image files into a CSV, surviving kills.

``predict_to_csv(predictor, files, "preds.csv")`` writes ``image,class,confidence`` rows in input order.
While it runs, rows go to ``preds.csv.partial`` (appended and fsynced batch by batch) next to a manifest
``preds.csv.partial.json`` that records what the rows depend on (task, models per class, weighting, graph
version, the input list). Run the same command again after a crash or Ctrl-C and it continues after the
last complete row; with other inputs or settings it refuses, naming the fix (``restart=True`` /
``--restart``). When every image is done the partial file is renamed onto ``preds.csv`` in one step, so
``preds.csv`` is either absent, the previous complete result, or the new complete result.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..errors import DataError
from ..storage.atomic import atomic_write_json, read_json
from .batch import BatchPredictor

__all__ = ["PredictReport", "predict_to_csv", "PREDICTIONS_FORMAT", "job_inputs", "exclusive_output"]

PREDICTIONS_FORMAT = "vlmhub.predictions/1"
HEADER = ("image", "class", "confidence")


@dataclass(frozen=True)
class PredictReport:
    """What a run did: rows in the output, rows computed now, rows found done from an earlier run."""

    out: str
    images: int
    computed: int
    resumed: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _exclusive(path: Path, what: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"another vlmhub process is writing {what} right now. Wait for it, or write elsewhere.") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def job_inputs(files: Sequence[str | os.PathLike], out: str | os.PathLike, batch_size: int, example: str
               ) -> tuple[Path, list[Path], list[str]]:
    """The checked inputs of a prediction job: the output path, the image paths and their ids (each once)."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1 (got {batch_size}).")
    out = Path(out)
    if out.is_dir():
        raise DataError(f"--out {out} is a folder. Name a file inside it, e.g. {out / example}.")
    paths = [Path(f) for f in files]
    if not paths:
        raise DataError("no images to classify. Pass image files or folders that contain images.")
    ids = [str(p) for p in paths]
    if len(set(ids)) != len(ids):
        raise DataError("the same image is listed more than once. Pass each file once.")
    return out, paths, ids


def exclusive_output(predictor: BatchPredictor, out: Path) -> contextlib.AbstractContextManager:
    """One writer per output file: a lock in the hub's cache (never deleted, so every process that writes
    ``out`` locks the same inode); a second writer is refused at once."""
    key = hashlib.sha1(str(out.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return _exclusive(predictor.hub.settings.cache_dir / "locks" / f"predict-{key}.lock", out)


def _inputs_digest(ids: Sequence[str]) -> str:
    h = hashlib.sha1()
    for i in ids:
        h.update(i.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _read_done(partial: Path, ids: Sequence[str], classes: Sequence[str] | None = None) -> int:
    """Complete rows already in ``partial`` (a torn last line is cut off); they must be a prefix of ``ids``.

    Each resumed row is validated: its class must be one of ``classes`` and its confidence a number in [0, 1],
    so an edited or damaged file is refused instead of trusted.
    """
    data = partial.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data):
        with open(partial, "r+b") as fh:
            fh.truncate(cut)
        data = data[:cut]
    rows = list(csv.reader(io.StringIO(data.decode("utf-8", "surrogateescape"))))
    if not rows or tuple(rows[0]) != HEADER:
        raise DataError(f"{partial} is not a vlmhub predictions file. Delete it, or pass --restart.")
    done = rows[1:]
    for n, row in enumerate(done):
        if len(row) != 3 or n >= len(ids) or row[0] != ids[n]:
            raise DataError(f"{partial} does not match this run's inputs at row {n + 2}. Pass --restart to start over.")
        if classes is not None and row[1] not in classes:
            raise DataError(f"{partial} row {n + 2} has class {row[1]!r}, which is not a class of this task (edited or "
                            "damaged file). Pass --restart to start over.")
        try:
            conf = float(row[2])
        except ValueError:
            conf = float("nan")
        if not 0.0 <= conf <= 1.0:
            raise DataError(f"{partial} row {n + 2} has confidence {row[2]!r}, not a number in [0, 1] (edited or "
                            "damaged file). Pass --restart to start over.")
    return len(done)


def predict_to_csv(predictor: BatchPredictor, files: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                   batch_size: int = 64, restart: bool = False, progress: bool = True,
                   on_batch: Callable[[int, int], None] | None = None) -> PredictReport:
    """Classify ``files`` with ``predictor`` into the CSV ``out``, resumably (see module doc).

    ``on_batch(done, total)`` is called after every batch is safely on disk.
    """
    out, paths, ids = job_inputs(files, out, batch_size, "predictions.csv")
    partial = out.with_name(out.name + ".partial")
    manifest = out.with_name(out.name + ".partial.json")
    t0 = time.perf_counter()
    with exclusive_output(predictor, out):
        want = {"format": PREDICTIONS_FORMAT, "run": predictor.fingerprint(), "inputs": {"count": len(ids), "sha1": _inputs_digest(ids)}}
        if restart:
            for p in (partial, manifest):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        if manifest.exists() and not partial.exists():
            manifest.unlink()  # left by a run killed after it finished (its rows are already in ``out``)
        have = read_json(manifest) if manifest.exists() else None
        if have is not None and have != json.loads(json.dumps(want)):
            raise DataError(
                f"an unfinished run for {out} with other inputs or settings exists ({partial.name}). Re-run it with its "
                "original inputs and options to finish it, or pass --restart to discard it."
            )
        if have is None or not partial.exists():
            atomic_write_json(manifest, want)
            with open(partial, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(HEADER)
                fh.flush()
                os.fsync(fh.fileno())
        done = _read_done(partial, ids, predictor.task.classes)
        resumed = done
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(ids), initial=done, unit="img", desc=f"predict {predictor.task.name}", leave=False)
        try:
            with open(partial, "a", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                while done < len(ids):
                    chunk = list(zip(ids[done:done + batch_size], paths[done:done + batch_size]))
                    res = predictor.predict_refs(chunk)
                    writer.writerows(zip(res["image"].tolist(), res["class"].tolist(), (f"{c:.6f}" for c in res["confidence"])))
                    fh.flush()
                    os.fsync(fh.fileno())
                    done += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                    if on_batch is not None:
                        on_batch(done, len(ids))
        finally:
            if bar is not None:
                bar.close()
        os.replace(partial, out)
        manifest.unlink()
    return PredictReport(str(out), len(ids), len(ids) - resumed, resumed, time.perf_counter() - t0)
