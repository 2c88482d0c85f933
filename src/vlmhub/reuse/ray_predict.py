"""Bulk reuse on Ray Data: classify many image files with the MLL ensemble into a Parquet file, resumably.

``predict_to_parquet_ray(predictor, files, "preds.parquet")`` is :func:`~vlmhub.reuse.job.predict_to_csv` on a
Ray cluster. The driver's :class:`~vlmhub.reuse.batch.BatchPredictor` has selected the models (Eq. 5-7, labels
only) and embedded the class names; the files are cut into chunks of ``batch_size`` images (the same chunks
the CSV job classifies) and a Ray dataset of chunk numbers runs through

1. one ``map_batches`` stage per selected model -- :class:`ModelProbs`, a callable class holding that model
   (weights loaded once per actor, from the object store): a batched forward of the chunk
   (:func:`~vlmhub.models.runner.embed_images`) and its zero-shot probabilities (Eq. 1,
   :func:`~vlmhub.reuse.ensemble.zero_shot_probs`);
2. :func:`combine_chunk`: the per-class entropy-weighted ensemble of Eq. 8-10
   (:func:`~vlmhub.reuse.ensemble.ensemble_scores`, :func:`~vlmhub.reuse.batch.predicted_classes`), the very
   functions of the single-process path, so the predictions are its predictions.

The driver writes every finished chunk as a Parquet part (atomically) into ``preds.parquet.parts/`` beside a
manifest of what the rows depend on (task, models per class, weighting, graph version, the inputs, the chunk
size). Re-run the same command after a crash and the parts already written are skipped; with other inputs or
settings it refuses, naming ``--restart``. When every chunk is done the parts are joined into ``preds.parquet``
in one atomic write (columns ``image``, ``class``, ``confidence``: those of the CSV output) and the parts
folder is removed.

``workers`` (:class:`~vlmhub.labeling.ray_backend.RayOptions`) is the number of actors per model stage; each
actor of a stage asks for ``num_cpus / number of selected models`` CPUs, so one worker's pipeline of all
models takes ``num_cpus``. Ray and pyarrow are the optional extra ``pip install 'vlmhub[ray]'``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import DataError, missing_extra
from ..labeling.ray_backend import RayOptions, deref, ray_session
from ..storage.atomic import atomic_write_bytes, atomic_write_json, read_json
from .batch import BatchPredictor, predicted_classes
from .ensemble import ensemble_scores, zero_shot_probs
from .job import HEADER, PredictReport, _inputs_digest, exclusive_output, job_inputs

__all__ = ["ModelProbs", "combine_chunk", "predict_to_parquet_ray", "PARQUET_PREDICTIONS_FORMAT"]

PARQUET_PREDICTIONS_FORMAT = "vlmhub.predictions.parquet/1"


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise missing_extra("pyarrow", "ray", "Parquet prediction output") from None
    return pa, pq


class ModelProbs:
    """Ray Data callable class: one selected model's zero-shot probabilities (Eq. 1) of whole chunks.

    ``model`` and ``chunks`` may be ``ObjectRef`` s. A batch holds chunk numbers (``chunk``) and the columns of
    earlier stages; this stage adds ``column``:
    per chunk a ``(width, C)`` array (rows past the chunk's length are zero)."""

    def __init__(self, model: Any, class_emb: np.ndarray, chunks: Sequence[Sequence[tuple[str, str]]], column: str,
                 width: int):
        self.model, self.class_emb, self.column, self.width = deref(model), np.asarray(class_emb), column, width
        self.chunks = [[(i, Path(p)) for i, p in c] for c in deref(chunks)]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..models.runner import embed_images

        rows = []
        for ci in np.asarray(batch["chunk"]).tolist():
            refs = self.chunks[ci]
            emb = embed_images([self.model], refs)[self.model.id]  # the single-process path's forward
            probs = zero_shot_probs(emb, self.class_emb, self.model.logit_scale)
            padded = np.zeros((self.width, probs.shape[1]), np.float64)
            padded[: len(refs)] = probs
            rows.append(padded)
        return {**batch, self.column: np.stack(rows)}


def combine_chunk(batch: dict[str, np.ndarray], *, columns: Mapping[str, str], members: Sequence[Sequence[str]],
                  weighting: str, lengths: Sequence[int]) -> dict[str, np.ndarray]:
    """Ray Data stage: Eq. 8-10 per chunk from the model stages' probabilities (``columns``: model id -> column).
    Outputs ``chunk``, ``pred`` (class index) and ``confidence``, each padded to the chunk width."""
    chunks = np.asarray(batch["chunk"])
    width = next(iter(batch[c] for c in columns.values())).shape[1]
    preds = np.zeros((len(chunks), width), np.int64)
    confs = np.zeros((len(chunks), width), np.float64)
    for r, ci in enumerate(chunks.tolist()):
        n = lengths[ci]
        probs = {m: batch[c][r][:n] for m, c in columns.items()}
        pred, conf = predicted_classes(ensemble_scores(probs, members, weighting))
        preds[r, :n], confs[r, :n] = pred, conf
    return {"chunk": chunks, "pred": preds, "confidence": confs}


def _part_bytes(ids: Sequence[str], classes: Sequence[str], confidence: np.ndarray) -> bytes:
    pa, pq = _pyarrow()
    table = pa.table({"image": pa.array(list(ids), pa.string()), "class": pa.array(list(classes), pa.string()),
                      "confidence": pa.array(np.asarray(confidence, np.float64), pa.float64())})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _read_part(path: Path, ids: Sequence[str], classes: Sequence[str]) -> Any:
    """A part written earlier, checked against this run (its rows, classes and confidences)."""
    pa, pq = _pyarrow()
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path} is not a readable Parquet part ({exc}). Pass --restart to start over.") from None
    if tuple(table.column_names) != HEADER or table.column("image").to_pylist() != list(ids):
        raise DataError(f"{path} does not match this run's inputs. Pass --restart to start over.")
    if not set(table.column("class").to_pylist()) <= set(classes):
        raise DataError(f"{path} names a class that is not a class of this task (edited or damaged file). "
                        "Pass --restart to start over.")
    conf = np.asarray(table.column("confidence").to_numpy(zero_copy_only=False), np.float64)
    if not np.all((conf >= 0.0) & (conf <= 1.0)):
        raise DataError(f"{path} holds a confidence outside [0, 1] (edited or damaged file). Pass --restart to start over.")
    return table


def predict_to_parquet_ray(predictor: BatchPredictor, files: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                           batch_size: int = 64, restart: bool = False, progress: bool = True,
                           ray: RayOptions | None = None,
                           on_chunk: Callable[[int, int], None] | None = None) -> PredictReport:
    """Classify ``files`` with ``predictor``'s ensemble on Ray into the Parquet file ``out``, resumably (module doc).

    ``ray``: the cluster and actors (default :class:`RayOptions`: ``VLMHUB_RAY_ADDRESS``, else a local Ray).
    ``on_chunk(done, total)`` is called after each chunk's part is on disk (chunks, not images).
    """
    pa, pq = _pyarrow()
    opts = ray or RayOptions()
    out, paths, ids = job_inputs(files, out, batch_size, "predictions.parquet")
    parts = out.with_name(out.name + ".parts")
    manifest = parts / "manifest.json"
    chunks = [list(zip(ids[i : i + batch_size], map(str, paths[i : i + batch_size]))) for i in range(0, len(ids), batch_size)]
    classes = list(predictor.task.classes)

    def part(ci: int) -> Path:
        return parts / f"part-{ci:06d}.parquet"

    t0 = time.perf_counter()
    with exclusive_output(predictor, out):
        want = {"format": PARQUET_PREDICTIONS_FORMAT, "run": predictor.fingerprint(), "batch_size": batch_size,
                "inputs": {"count": len(ids), "sha1": _inputs_digest(ids)}}
        if restart and parts.exists():
            shutil.rmtree(parts)
        have = read_json(manifest) if manifest.exists() else None
        if have is not None and have != json.loads(json.dumps(want)):
            raise DataError(f"an unfinished run for {out} with other inputs or settings exists ({parts.name}). Re-run it "
                            "with its original inputs and options to finish it, or pass --restart to discard it.")
        parts.mkdir(parents=True, exist_ok=True)
        if have is None:
            atomic_write_json(manifest, want)
        done = [ci for ci in range(len(chunks)) if part(ci).exists()]
        for ci in done:
            _read_part(part(ci), [i for i, _ in chunks[ci]], classes)
        todo = sorted(set(range(len(chunks))) - set(done))
        resumed = sum(len(chunks[ci]) for ci in done)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(chunks), initial=len(done), unit="shard", leave=False,
                       desc=f"predict {predictor.task.name} on Ray ({len(ids)} images)")
        stored = [len(done)]

        def store(ci: int, pred: np.ndarray, conf: np.ndarray) -> None:
            atomic_write_bytes(part(ci), _part_bytes([i for i, _ in chunks[ci]], [classes[int(c)] for c in pred], conf))
            stored[0] += 1
            if bar is not None:
                bar.update(1)
            if on_chunk is not None:
                on_chunk(stored[0], len(chunks))

        try:
            if todo:
                _run_on_ray(predictor, chunks, todo, batch_size, opts, store)
        finally:
            if bar is not None:
                bar.close()
        tables = [_read_part(part(ci), [i for i, _ in chunks[ci]], classes) for ci in range(len(chunks))]
        buf = io.BytesIO()
        pq.write_table(pa.concat_tables(tables), buf)
        atomic_write_bytes(out, buf.getvalue())
        shutil.rmtree(parts)
    return PredictReport(str(out), len(ids), len(ids) - resumed, resumed, time.perf_counter() - t0)


def _run_on_ray(predictor: BatchPredictor, chunks: Sequence[Sequence[tuple[str, str]]], todo: Sequence[int],
                width: int, opts: RayOptions, store: Callable[[int, np.ndarray, np.ndarray], None]) -> None:
    """Run the chunks ``todo`` through the model stages and the ensemble; ``store(chunk, pred, conf)`` each."""
    ens = predictor.ensemble
    model_ids = list(ens.models)
    columns = {m: f"p_{j}" for j, m in enumerate(model_ids)}
    lengths = [len(c) for c in chunks]
    cpus = opts.num_cpus / len(model_ids)
    with ray_session(opts.resolved_address(predictor.hub.settings), purpose="prediction on Ray") as ray:
        ds = ray.data.from_items([{"chunk": ci} for ci in todo], override_num_blocks=len(todo))
        # the file list and each model go into the object store once (held here until the last chunk is in)
        chunks_ref = ray.put([list(c) for c in chunks])
        model_refs = {m: ray.put(ens.models[m]) for m in model_ids}
        for m in model_ids:
            ds = ds.map_batches(ModelProbs, fn_constructor_kwargs={
                "model": model_refs[m], "class_emb": ens.class_emb[m], "chunks": chunks_ref, "column": columns[m],
                "width": width},
                batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=min(opts.workers, len(todo))),
                num_cpus=cpus,
                max_restarts=opts.max_retries, max_task_retries=opts.max_retries)
        ds = ds.map_batches(combine_chunk, fn_kwargs={"columns": columns, "members": ens.members,
                                                      "weighting": ens.weighting, "lengths": lengths},
                            batch_size=1, batch_format="numpy", num_cpus=0.01, max_retries=opts.max_retries)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for r, ci in enumerate(np.asarray(batch["chunk"]).tolist()):
                n = lengths[ci]
                store(ci, batch["pred"][r][:n], batch["confidence"][r][:n])
