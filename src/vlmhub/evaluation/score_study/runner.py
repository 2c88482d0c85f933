"""Score study, runner: the study of one target on arrays (:func:`study_target`) and on real tasks with a hub
(:func:`run_score_study`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...errors import DataError, VlmhubError
from .protocol import INB, LABEL_FREE, MLL, PROBE_ZS, StudyConfig, _check_labels, cross_fit_accuracy, draw_probe, \
    pick_accuracy, rank_agreement, split_eval_pool
from .results import SelectorRow, StudyResult, TargetData, TargetStudy, TargetTruth

__all__ = ["study_target", "measure_forward_seconds", "imagenet_top1_scores", "run_score_study"]


def _row(truth: TargetTruth, selector: str, shots: int, seed: int, scores: Sequence[float], images: int,
         seconds: float, note: str = "") -> SelectorRow:
    zs = np.asarray(truth.zero_shot)
    lp = np.asarray(truth.linear_probe)
    s = np.asarray(scores, np.float64)
    tau_zs, rho_zs = rank_agreement(s, zs)
    tau_lp, rho_lp = rank_agreement(s, lp)
    i, acc = pick_accuracy(s, zs)
    _, acc_lp = pick_accuracy(s, lp)
    return SelectorRow(truth.target, selector, shots, seed, tuple(float(v) for v in s), tau_zs, rho_zs, tau_lp, rho_lp,
                       truth.model_ids[i] if i >= 0 else "", acc, float(zs.max() - acc), acc_lp, float(lp.max() - acc_lp),
                       images, seconds, note)


def study_target(data: TargetData, config: StudyConfig = StudyConfig(), *,
                 progress: Callable[[str], None] | None = None) -> TargetStudy:
    """Truth and every selector's metrics on one target (see the module docstring). Pure computation."""
    from ...selection.transferability import ProbeSet, compute_score

    labels = _check_labels(data.labels)
    ev = np.asarray(data.eval_idx, dtype=np.int64)
    pool = np.asarray(data.pool_idx, dtype=np.int64)
    if np.intersect1d(ev, pool).size:
        raise DataError(f"{data.name}: evaluation and probe-pool images overlap; use split_eval_pool")
    ids = tuple(data.model_ids)
    missing = [m for m in ids if m not in data.features or m not in data.probs]
    if missing:
        raise DataError(f"{data.name}: no features or zero-shot probabilities for model(s) {', '.join(missing)}")
    C = len(data.classes)

    # -- truth ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    zs, lp = [], []
    for m in ids:
        zs.append(float(np.mean(np.asarray(data.probs[m])[ev].argmax(axis=1) == labels[ev])))
        lp.append(cross_fit_accuracy(np.asarray(data.features[m])[ev], labels[ev], folds=min(config.folds, ev.size),
                                     seed=config.seed, l2=config.l2).accuracy)
        if progress:
            progress(f"{data.name}: linear probe {m} {lp[-1]:.3f} (zero-shot {zs[-1]:.3f})")
    pool_sizes = tuple(int(n) for n in np.bincount(labels[pool], minlength=C))
    truth = TargetTruth(data.name, ids, tuple(zs), tuple(lp), int(ev.size), C, pool_sizes, time.perf_counter() - t0)

    rows: list[SelectorRow] = []
    # -- label-free selectors (one row per target) --------------------------------------------
    for sel in LABEL_FREE:
        if sel not in data.label_free:
            continue
        vals = [data.label_free[sel].get(m) for m in ids]
        s = [float(v) if v is not None else float("nan") for v in vals]
        note = "" if all(math.isfinite(v) for v in s) else "score missing for some models"
        rows.append(_row(truth, sel, 0, 0, s, 0, float(data.label_free_seconds.get(sel, 0.0)), note))

    # -- probe-set selectors -------------------------------------------------------------------
    names = config.score_list()
    for rep in range(config.repeats):
        for shots in config.shots:
            idx = draw_probe(labels, pool, shots, rep, config.seed)
            y = labels[idx]
            # zero-shot accuracy on the probe set
            t1 = time.perf_counter()
            s = [float(np.mean(np.asarray(data.probs[m])[idx].argmax(axis=1) == y)) for m in ids]
            rows.append(_row(truth, PROBE_ZS, shots, rep, s, int(idx.size), time.perf_counter() - t1))
            probes = {m: ProbeSet(features=np.asarray(data.features[m])[idx], labels=y,
                                  source_probs=np.asarray(data.probs[m])[idx]) for m in ids}
            for name in names:
                s, notes, secs = [], [], 0.0
                for m in ids:
                    t1 = time.perf_counter()
                    try:
                        v = float(compute_score(name, probes[m]))
                    except (VlmhubError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                        v = float("nan")
                        notes.append(f"{m}: {type(exc).__name__}: {exc}"[:200])
                    secs += time.perf_counter() - t1
                    if not math.isfinite(v) and not notes:
                        notes.append(f"{m}: non-finite score")
                    s.append(v)
                rows.append(_row(truth, name, shots, rep, s, int(idx.size), secs, "; ".join(notes)))
            if progress:
                progress(f"{data.name}: seed {rep} shots {shots} ({idx.size} probe images) scored")
    return TargetStudy(truth, tuple(rows))


# ---------------------------------------------------------------------------------------------
# I/O: a real task with a hub
# ---------------------------------------------------------------------------------------------


def measure_forward_seconds(models: Sequence[Any], refs: Sequence[tuple[str, Any]], *, batch_size: int = 16) -> dict[str, float]:
    """Seconds per image of each trunk's forward pass (decode + preprocess + network), *without* cache."""
    from ...models.runner import group_by_trunk, trunk_features

    out = {}
    for key, group in group_by_trunk(models).items():
        trunk_features(group[0], refs[:1], batch_size=1)  # load weights / warm up outside the timing
        t0 = time.perf_counter()
        trunk_features(group[0], refs, batch_size=batch_size)
        out[key] = (time.perf_counter() - t0) / max(len(refs), 1)
    return out


def imagenet_top1_scores(hub: Any, models: Sequence[Any]) -> tuple[dict[str, float], str]:
    """INB's scores: ``ModelSpec.imagenet_top1``; where a spec has none, the zero-shot top-1 on the
    ``imagenet-sample`` images of the hub's graph, read from the model labels (as in
    ``benchmarks/measure_imagenet_top1.py``; no image is forwarded). Returns (scores, source note)."""
    out = {m.id: float(m.spec.imagenet_top1) for m in models if m.spec.imagenet_top1 is not None}
    todo = [m for m in models if m.id not in out]
    if not todo:
        return out, "spec"
    try:
        from ...labeling import LabelStore
        from ...models.offline import imagenet_class_texts, imagenet_wnids

        ids = [i for i in hub.graph().image_ids() if i.startswith("imagenet-sample/")]
        wnids = {w: k for k, w in enumerate(imagenet_wnids())}
        ids = [i for i in ids if i.split("/")[1] in wnids]
        if not ids:
            return out, "spec (imagenet-sample not in the graph: no fallback)"
        truth = np.array([wnids[i.split("/")[1]] for i in ids])
        names = list(imagenet_class_texts("name", str(hub.settings.wordnet_dir)))
        store = LabelStore(hub.settings)
        for m in todo:
            img = store.label(m.id).images.get(ids)
            cls = m.class_embeddings(names)
            out[m.id] = float(np.mean((np.asarray(img) @ np.asarray(cls).T).argmax(1) == truth))
    except (VlmhubError, OSError, LookupError, ValueError) as exc:
        return out, f"spec (fallback failed: {type(exc).__name__}: {exc})"[:200]
    return out, f"imagenet-sample top-1 from labels ({len(ids)} images) for {len(todo)} model(s)"


def run_score_study(hub: Any, tasks: Sequence[Any], config: StudyConfig = StudyConfig(), *,
                    model_ids: Sequence[str] | None = None, forward_timing_images: int = 16,
                    progress: Callable[[str], None] | None = None) -> StudyResult:
    """Run the study on task folders with a labeled hub: embed (cached trunk features), score, compare.

    Only the evaluation images and the probe pool are embedded; trunk features go to the hub's
    feature cache, so a second run is cheap. Forward time is measured once (``forward_timing_images``
    uncached images of the first task per trunk; 0 skips it). MLL's seconds are those of
    ``selector.estimate(task)`` (caption text embedding and Eq. 5-7) after a warm-up call that loads
    WordNet and the text model once per process.
    """
    from ...models.runner import embed_images
    from ...reuse.ensemble import zero_shot_probs
    from ...tasks import task_images

    if not tasks:
        raise DataError("no target tasks given; pass at least one task folder")
    selector = hub.selector()
    ids = list(model_ids) if model_ids is not None else list(selector.model_ids_)
    unknown = [m for m in ids if m not in selector.model_ids_]
    if unknown:
        raise DataError(f"model(s) {', '.join(unknown)} are not labeled in this hub; run `vlmhub label` first")
    models = hub.models(ids)
    settings = hub.settings
    studies, forward, notes = [], {}, []
    selector.estimate(tasks[0])  # one-time loads (WordNet, text model) are not charged to the first target
    for ti, task in enumerate(tasks):
        images = task_images(task)
        labels = np.asarray(images.labels, dtype=np.int64)
        ev, pool = split_eval_pool(labels, config.eval_per_class, config.pool_size, config.seed)
        keep = np.sort(np.concatenate([ev, pool]))
        pos = np.full(labels.size, -1, dtype=np.int64)
        pos[keep] = np.arange(keep.size)
        all_refs = images.refs()
        refs = [all_refs[i] for i in keep]
        if progress:
            progress(f"{task.name}: embedding {len(refs)} images ({ev.size} eval, {pool.size} probe pool) with {len(models)} models")
        emb = embed_images(models, refs, batch_size=settings.batch_size, feature_cache_dir=settings.cache_dir / "features")
        probs = {m.id: zero_shot_probs(emb[m.id], m.class_embeddings(list(task.classes)), m.logit_scale) for m in models}
        if ti == 0 and forward_timing_images > 0:
            forward = measure_forward_seconds(models, refs[:forward_timing_images])
        t0 = time.perf_counter()
        est = selector.estimate(task)
        mll_seconds = time.perf_counter() - t0
        r_mean = {mid: float(v) for mid, v in zip(selector.model_ids_, np.asarray(est["r"]).mean(axis=1))}
        if ti == 0:
            inb, inb_note = imagenet_top1_scores(hub, models)
            notes.append(f"INB scores: {inb_note}")
            if progress:
                progress(f"INB scores: {inb_note}")
        data = TargetData(task.name, tuple(task.classes), tuple(ids), labels[keep], emb, probs, pos[ev], pos[pool],
                          {MLL: r_mean, INB: inb}, {MLL: mll_seconds, INB: 0.0})
        studies.append(study_target(data, config, progress=progress))
    return StudyResult(config, tuple(studies), forward, tuple(notes))
