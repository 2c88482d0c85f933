"""Score study: how well do label-free MLL and the label-using transferability scores rank a hub's models?

For one target task and one hub, the study measures the *truth* on held-out evaluation images, then
scores every model with every selector on small labelled probe sets and compares:

* **truth** (evaluation images, a seeded per-class subset disjoint from every probe image):
  each model's zero-shot accuracy, and its *linear-probe* accuracy: an L2-regularised multinomial
  logistic regression on the model's (standardised) image embeddings, cross-fitted with stratified
  k-fold (every evaluation image is predicted by a probe that never saw it; the mean held-out fold
  accuracy is reported).
* **selectors**:

  - every score of :func:`vlmhub.selection.transferability.score_names` on
    ``ProbeSet(features=image embeddings, labels, source_probs=zero-shot softmax over the target
    classes)``;
  - ``probe_zs_acc``: the model's zero-shot accuracy on the probe set (the obvious label-using
    selector);
  - ``mll``: MLL's label-free per-dataset score, ``mean_y r_{m,y}`` of Eq. 7 (no target image);
  - ``inb``: ImageNet top-1 of the model (``ModelSpec.imagenet_top1``, or where that is not set the
    zero-shot top-1 on the graph's ``imagenet-sample`` images read from the labels; no target image).

  Probe sets have ``n`` images per class for each ``n`` in ``shots`` (capped at what the class's
  probe pool holds) and are redrawn for ``repeats`` seeds. For one seed the sets are nested
  (the 5-shot set is inside the 10-shot set), which makes the trend over ``n`` less noisy.
* **metrics** per (selector, target, n, seed): Kendall tau-b and Spearman rho between the scores
  and (a) zero-shot accuracy, (b) linear-probe accuracy; the zero-shot (and linear-probe) accuracy
  of the top-1 pick and its regret to the best model; cost: images forwarded per model and the
  seconds the scores took (image forward time, from the feature cache here, is measured once per
  trunk and reported separately).

Conventions: a selector whose scores are all equal ranks nothing, so its tau and rho are 0 (scipy
would return NaN); a score that failed or returned a non-finite value for any model gives NaN
metrics for that row (and the error is kept in ``note``); ties at the top pick the *mean* truth of
the tied models (a constant score "picks" the average model, not the first one in hub order).

The module is split into pure computation on arrays (:func:`split_eval_pool`, :func:`draw_probe`,
:func:`stratified_folds`, :func:`fit_logistic`, :func:`cross_fit_accuracy`, :func:`rank_agreement`,
:func:`pick_accuracy`, :func:`study_target`, :func:`summarize`) and one I/O function that embeds
images of a real task with a hub (:func:`run_score_study`). Nothing happens at import time; file
output (CSV, plot) is the CLI's job (``vlmhub score-study``).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError, VlmhubError

__all__ = [
    "PROBE_ZS",
    "MLL",
    "INB",
    "LABEL_FREE",
    "StudyConfig",
    "TargetData",
    "TargetTruth",
    "SelectorRow",
    "SummaryRow",
    "TargetStudy",
    "StudyResult",
    "LogisticProbe",
    "CrossFitResult",
    "split_eval_pool",
    "draw_probe",
    "stratified_folds",
    "fit_logistic",
    "cross_fit_accuracy",
    "rank_agreement",
    "pick_accuracy",
    "study_target",
    "summarize",
    "render_plot",
    "combine_results",
    "measure_forward_seconds",
    "imagenet_top1_scores",
    "run_score_study",
]

PROBE_ZS = "probe_zs_acc"
MLL = "mll"
INB = "inb"
LABEL_FREE = (MLL, INB)


# ---------------------------------------------------------------------------------------------
# Configuration and results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyConfig:
    """What the study measures. Invalid values raise :class:`~vlmhub.errors.DataError`."""

    shots: tuple[int, ...] = (5, 10, 50)
    repeats: int = 3
    eval_per_class: int = 100
    pool_per_class: int | None = None  # probe pool per class; None = 2 * max(shots)
    folds: int = 5
    l2: float = 1.0
    seed: int = 0
    scores: tuple[str, ...] | None = None  # None = every transferability score

    def __post_init__(self) -> None:
        shots = tuple(int(s) for s in self.shots)
        if not shots or min(shots) < 2:
            raise DataError(f"shots must be integers >= 2 (every class needs 2 probe images), got {list(self.shots)}")
        object.__setattr__(self, "shots", tuple(sorted(set(shots))))
        if self.repeats < 1:
            raise DataError(f"repeats (seeds) must be >= 1, got {self.repeats}")
        if self.eval_per_class < 2:
            raise DataError(f"eval_per_class must be >= 2, got {self.eval_per_class}")
        if self.pool_per_class is not None and self.pool_per_class < 2:
            raise DataError(f"pool_per_class must be >= 2, got {self.pool_per_class}")
        if self.folds < 2:
            raise DataError(f"folds must be >= 2 for cross-fitting, got {self.folds}")
        if not (self.l2 > 0 and math.isfinite(self.l2)):
            raise DataError(f"l2 must be a positive number, got {self.l2}")
        if self.scores is not None:
            from ..selection.transferability import get_score

            object.__setattr__(self, "scores", tuple(get_score(s).name for s in self.scores))

    @property
    def pool_size(self) -> int:
        return self.pool_per_class if self.pool_per_class is not None else 2 * max(self.shots)

    def score_list(self) -> tuple[str, ...]:
        from ..selection.transferability import score_names

        return self.scores if self.scores is not None else tuple(score_names())

    def to_dict(self) -> dict:
        return {"shots": list(self.shots), "repeats": self.repeats, "eval_per_class": self.eval_per_class,
                "pool_per_class": self.pool_size, "folds": self.folds, "l2": self.l2, "seed": self.seed,
                "scores": list(self.score_list())}


@dataclass(frozen=True, eq=False)
class TargetData:
    """One target task encoded by every model: the input of :func:`study_target` (arrays, no I/O).

    ``features[m]`` (N x D_m) are model m's image embeddings and ``probs[m]`` (N x C) its zero-shot
    softmax over the target classes, for the same N images whose class ids are ``labels``.
    ``eval_idx`` and ``pool_idx`` are disjoint row indices (see :func:`split_eval_pool`).
    ``label_free[selector][m]`` are scores that need no image (MLL, INB) and
    ``label_free_seconds[selector]`` what they cost.
    """

    name: str
    classes: tuple[str, ...]
    model_ids: tuple[str, ...]
    labels: np.ndarray
    features: Mapping[str, np.ndarray]
    probs: Mapping[str, np.ndarray]
    eval_idx: np.ndarray
    pool_idx: np.ndarray
    label_free: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    label_free_seconds: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetTruth:
    """Per-model truth on a target's evaluation images."""

    target: str
    model_ids: tuple[str, ...]
    zero_shot: tuple[float, ...]
    linear_probe: tuple[float, ...]
    n_eval: int
    n_classes: int
    pool_per_class: tuple[int, ...]  # probe-pool size of every class
    seconds_linear_probe: float

    def best_zero_shot(self) -> float:
        return max(self.zero_shot)


@dataclass(frozen=True)
class SelectorRow:
    """One selector on one target at one probe size and seed (label-free selectors: shots 0, seed 0)."""

    target: str
    selector: str
    shots: int
    seed: int
    scores: tuple[float, ...]  # per model, in TargetTruth.model_ids order
    tau_zs: float
    rho_zs: float
    tau_lp: float
    rho_lp: float
    pick: str
    pick_acc: float  # zero-shot accuracy of the top-1 pick (mean over ties)
    regret: float  # best zero-shot accuracy - pick_acc
    pick_lp: float  # linear-probe accuracy of the pick
    regret_lp: float
    images_per_model: int  # target images each model must forward to compute the score
    seconds: float  # time of the scores for all models (features given)
    note: str = ""


@dataclass(frozen=True)
class SummaryRow:
    """Means over targets and seeds of :class:`SelectorRow` metrics for one (selector, shots)."""

    selector: str
    shots: int
    n_rows: int
    n_failed: int
    tau_zs: float
    rho_zs: float
    tau_lp: float
    rho_lp: float
    pick_acc: float
    regret: float
    regret_lp: float
    images_per_model: float
    seconds: float
    forward_seconds: float  # images_per_model x seconds per image of the hub's trunks (measured once)


@dataclass(frozen=True)
class TargetStudy:
    truth: TargetTruth
    rows: tuple[SelectorRow, ...]


@dataclass(frozen=True)
class StudyResult:
    """Everything the study measured; formats itself as Markdown, CSV and JSON-ready dicts."""

    config: StudyConfig
    targets: tuple[TargetStudy, ...]
    forward_seconds_per_image: Mapping[str, float] = field(default_factory=dict)  # trunk -> s / image
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> tuple[SelectorRow, ...]:
        return tuple(r for t in self.targets for r in t.rows)

    def selectors(self) -> list[str]:
        return list(dict.fromkeys(r.selector for r in self.rows))

    def hub_forward_seconds_per_image(self) -> float:
        """Seconds to forward one image through every trunk of the hub (NaN if not measured)."""
        return float(sum(self.forward_seconds_per_image.values())) if self.forward_seconds_per_image else float("nan")

    def summary(self) -> tuple[SummaryRow, ...]:
        return summarize(self.rows, self.hub_forward_seconds_per_image())

    # -- formatting --------------------------------------------------------------------------
    def summary_markdown(self) -> str:
        head = ("| selector | shots | τ vs zero-shot | ρ vs zero-shot | τ vs linear probe | ρ vs linear probe "
                "| top-1 acc | regret | LP regret | images / model | score s | forward s (est.) |")
        lines = [head, "|" + "---|" * 12]
        for s in self.summary():
            fail = f" ({s.n_failed} failed)" if s.n_failed else ""
            lines.append(
                f"| {s.selector}{fail} | {s.shots or '-'} | {_f(s.tau_zs)} | {_f(s.rho_zs)} | {_f(s.tau_lp)} | {_f(s.rho_lp)} "
                f"| {_f(s.pick_acc)} | {_f(s.regret)} | {_f(s.regret_lp)} | {s.images_per_model:.0f} | {_f(s.seconds, 3)} "
                f"| {_f(s.forward_seconds, 1)} |")
        return "\n".join(lines)

    def target_markdown(self, metric: str = "tau_zs") -> str:
        """A (selector, shots) x target table of the seed-mean of one :class:`SelectorRow` metric."""
        names = [t.truth.target for t in self.targets]
        keys = list(dict.fromkeys((r.selector, r.shots) for r in self.rows))
        lines = ["| selector | shots | " + " | ".join(names) + " | mean |", "|" + "---|" * (len(names) + 3)]
        for sel, shots in keys:
            vals = []
            for name in names:
                v = [getattr(r, metric) for r in self.rows if r.target == name and r.selector == sel and r.shots == shots]
                vals.append(_nanmean(v))
            lines.append(f"| {sel} | {shots or '-'} | " + " | ".join(_f(v) for v in vals) + f" | {_f(_nanmean(vals))} |")
        return "\n".join(lines)

    def truth_markdown(self) -> str:
        lines = ["| target | classes | eval images | probe pool / class | model | zero-shot | linear probe |",
                 "|---|---|---|---|---|---|---|"]
        for t in self.targets:
            tr = t.truth
            pool = f"{min(tr.pool_per_class)}–{max(tr.pool_per_class)}" if min(tr.pool_per_class) != max(tr.pool_per_class) else str(tr.pool_per_class[0])
            for i, m in enumerate(tr.model_ids):
                lead = f"| {tr.target} | {tr.n_classes} | {tr.n_eval} | {pool} " if i == 0 else "| | | | "
                lines.append(lead + f"| {m} | {tr.zero_shot[i]:.3f} | {tr.linear_probe[i]:.3f} |")
        return "\n".join(lines)

    def rows_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["target", "selector", "shots", "seed", "tau_zs", "rho_zs", "tau_lp", "rho_lp", "pick", "pick_acc",
                    "regret", "pick_lp", "regret_lp", "images_per_model", "seconds", "note", "scores"])
        for r in self.rows:
            w.writerow([r.target, r.selector, r.shots, r.seed, _c(r.tau_zs), _c(r.rho_zs), _c(r.tau_lp), _c(r.rho_lp),
                        r.pick, _c(r.pick_acc), _c(r.regret), _c(r.pick_lp), _c(r.regret_lp), r.images_per_model,
                        _c(r.seconds), r.note, " ".join(_c(s) for s in r.scores)])
        return buf.getvalue()

    def summary_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = list(SummaryRow.__dataclass_fields__)
        w.writerow(cols)
        for s in self.summary():
            w.writerow([_c(getattr(s, c)) if isinstance(getattr(s, c), float) else getattr(s, c) for c in cols])
        return buf.getvalue()

    def truth_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["target", "model", "zero_shot", "linear_probe", "n_eval", "n_classes"])
        for t in self.targets:
            tr = t.truth
            for i, m in enumerate(tr.model_ids):
                w.writerow([tr.target, m, _c(tr.zero_shot[i]), _c(tr.linear_probe[i]), tr.n_eval, tr.n_classes])
        return buf.getvalue()

    def to_dict(self) -> dict:
        def clean(x: Any) -> Any:
            if isinstance(x, float):
                return None if not math.isfinite(x) else x
            if isinstance(x, (tuple, list)):
                return [clean(v) for v in x]
            return x

        return {
            "config": self.config.to_dict(),
            "forward_seconds_per_image": {k: float(v) for k, v in self.forward_seconds_per_image.items()},
            "notes": list(self.notes),
            "summary": [{k: clean(v) for k, v in s.__dict__.items()} for s in self.summary()],
            "truth": [{k: clean(v) for k, v in t.truth.__dict__.items()} for t in self.targets],
            "rows": [{k: clean(v) for k, v in r.__dict__.items()} for r in self.rows],
        }


    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StudyResult":
        """Rebuild a result from :meth:`to_dict` output (e.g. a ``score_study.json``)."""
        def num(x: Any) -> float:
            return float("nan") if x is None else float(x)

        try:
            c = d["config"]
            config = StudyConfig(shots=tuple(c["shots"]), repeats=int(c["repeats"]), eval_per_class=int(c["eval_per_class"]),
                                 pool_per_class=int(c["pool_per_class"]), folds=int(c["folds"]), l2=float(c["l2"]),
                                 seed=int(c["seed"]), scores=tuple(c["scores"]))
            rows = [SelectorRow(**{**r, "scores": tuple(num(v) for v in r["scores"]),
                                   **{k: num(r[k]) for k in ("tau_zs", "rho_zs", "tau_lp", "rho_lp", "pick_acc", "regret",
                                                             "pick_lp", "regret_lp", "seconds")}}) for r in d["rows"]]
            targets = []
            for t in d["truth"]:
                truth = TargetTruth(t["target"], tuple(t["model_ids"]), tuple(num(v) for v in t["zero_shot"]),
                                    tuple(num(v) for v in t["linear_probe"]), int(t["n_eval"]), int(t["n_classes"]),
                                    tuple(int(v) for v in t["pool_per_class"]), num(t["seconds_linear_probe"]))
                targets.append(TargetStudy(truth, tuple(r for r in rows if r.target == truth.target)))
            return cls(config, tuple(targets), dict(d.get("forward_seconds_per_image") or {}), tuple(d.get("notes") or ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a score-study result ({type(exc).__name__}: {exc}); pass the score_study.json "
                            f"that `vlmhub score-study --out` wrote") from None


def combine_results(results: Sequence[StudyResult]) -> StudyResult:
    """One result from several runs of the same configuration on different targets (timings of the
    first run that measured forward time are kept)."""
    if not results:
        raise DataError("nothing to combine")
    cfg = results[0].config
    if any(r.config.to_dict() != cfg.to_dict() for r in results):
        raise DataError("results with different study configurations cannot be combined; rerun with the same options")
    names = [t.truth.target for r in results for t in r.targets]
    if len(set(names)) != len(names):
        raise DataError(f"a target appears in more than one result: {names}")
    forward = next((r.forward_seconds_per_image for r in results if r.forward_seconds_per_image), {})
    notes = tuple(dict.fromkeys(n for r in results for n in r.notes))
    return StudyResult(cfg, tuple(t for r in results for t in r.targets), dict(forward), notes)


def _f(x: float, nd: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _c(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.6g}"


def _nanmean(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    return float(v.mean()) if v.size else float("nan")


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def _check_labels(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0:
        raise DataError("labels must be a non-empty 1-D array of non-negative integer class ids")
    return arr.astype(np.int64)


def split_eval_pool(labels: Any, eval_per_class: int, pool_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint per-class evaluation and probe-pool row indices (both sorted).

    Each class's rows are shuffled with a seed of ``(seed, class)``; the first ``eval_per_class`` go
    to evaluation and the next ``pool_per_class`` to the probe pool. A class with fewer than
    ``eval_per_class + pool_per_class`` images is split in that ratio (at least 2 on each side).
    Raises :class:`DataError` if a class has fewer than 4 images.
    """
    labels = _check_labels(labels)
    if eval_per_class < 2 or pool_per_class < 2:
        raise DataError(f"eval_per_class and pool_per_class must be >= 2 (got {eval_per_class}, {pool_per_class})")
    ev, pool = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.default_rng([seed, int(c), 1]).permutation(idx.size)]
        n = idx.size
        if n < 4:
            raise DataError(f"class {int(c)} has only {n} image(s); the study needs at least 4 per class "
                            f"(2 for evaluation, 2 for probes). Add images or drop the class.")
        if n >= eval_per_class + pool_per_class:
            e, p = eval_per_class, pool_per_class
        else:
            e = min(max(int(round(n * eval_per_class / (eval_per_class + pool_per_class))), 2), n - 2)
            p = n - e
        ev.append(np.sort(idx[:e]))
        pool.append(np.sort(idx[e:e + p]))
    return np.concatenate(ev), np.concatenate(pool)


def draw_probe(labels: Any, pool_idx: Any, shots: int, repeat: int, seed: int = 0) -> np.ndarray:
    """Row indices of a probe set: ``shots`` images per class (capped at the pool) from ``pool_idx``.

    The pool of every class is shuffled with a seed of ``(seed, repeat, class)`` and its first
    ``shots`` rows are taken, so for one repeat a smaller set is a subset of a larger one.
    """
    labels = _check_labels(labels)
    pool_idx = np.asarray(pool_idx, dtype=np.int64)
    if shots < 1:
        raise DataError(f"shots must be >= 1, got {shots}")
    out = []
    for c in np.unique(labels[pool_idx]):
        idx = np.sort(pool_idx[labels[pool_idx] == c])
        idx = idx[np.random.default_rng([seed, repeat, int(c), 2]).permutation(idx.size)]
        out.append(idx[:shots])
    return np.sort(np.concatenate(out))


def stratified_folds(labels: Any, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) index pairs; every row is in exactly one test fold, classes spread evenly.

    Rows of each class are shuffled (seeded) and dealt round-robin to the folds, continuing where the
    previous class stopped so fold sizes differ by at most one.
    """
    labels = _check_labels(labels)
    if not 2 <= k <= labels.size:
        raise DataError(f"k-fold needs 2 <= k <= {labels.size} (the number of images), got k={k}")
    fold = np.empty(labels.size, dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.default_rng([seed, int(c), 3]).permutation(idx.size)]
        fold[idx] = (offset + np.arange(idx.size)) % k
        offset += idx.size
    all_idx = np.arange(labels.size)
    return [(all_idx[fold != f], all_idx[fold == f]) for f in range(k)]


# ---------------------------------------------------------------------------------------------
# Linear probe: multinomial logistic regression (L-BFGS, L2, standardised features)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LogisticProbe:
    """A fitted multinomial logistic regression: ``argmax_c ((x - mean) / scale) @ W[:, c] + b[c]``."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # D x C
    bias: np.ndarray  # C
    classes: np.ndarray  # class id of each column
    n_iter: int
    converged: bool

    def decision_function(self, features: Any) -> np.ndarray:
        x = (np.asarray(features, np.float64) - self.mean) / self.scale
        return x @ self.weights + self.bias

    def predict(self, features: Any) -> np.ndarray:
        return self.classes[np.argmax(self.decision_function(features), axis=1)]


def fit_logistic(features: Any, labels: Any, *, l2: float = 1.0, max_iter: int = 500, tol: float = 1e-6) -> LogisticProbe:
    """Fit ``min_{W,b} mean_i CE(softmax(W^T x_i + b), y_i) + l2 / (2N) ||W||^2`` by L-BFGS.

    Features are standardised with the training mean and standard deviation (constant columns get
    scale 1). The bias is not penalised (``l2 = 1`` equals scikit-learn's ``C = 1``). The problem is
    solved exactly in the row space of the standardised training matrix (an L2-penalised solution
    always lies there), which makes wide, low-rank embeddings (D up to ~2,000) cheap.
    """
    from scipy import optimize

    x = np.asarray(features, np.float64)
    y = _check_labels(labels)
    if x.ndim != 2 or x.shape[0] != y.size:
        raise DataError(f"features must be N x D with one row per label; got {x.shape} for {y.size} labels")
    if not np.isfinite(x).all():
        raise DataError("features contain NaN or infinite values; drop or re-encode those images")
    classes, yi = np.unique(y, return_inverse=True)
    n, C = x.shape[0], classes.size
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0))), scale, 1.0)
    xs = (x - mean) / scale
    if C < 2:
        W = np.zeros((x.shape[1], 1))
        return LogisticProbe(mean, scale, W, np.zeros(1), classes, 0, True)
    # exact reduction to the row space: xs = U S V^T, W = V A
    u, s, vt = np.linalg.svd(xs, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(xs.shape) * np.finfo(np.float64).eps if s.size else np.zeros(0, bool)
    z = u[:, keep] * s[keep]  # n x r
    v = vt[keep].T  # D x r
    r = z.shape[1]
    Y = np.zeros((n, C))
    Y[np.arange(n), yi] = 1.0
    lam = float(l2) / n

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        A = theta[: r * C].reshape(r, C)
        b = theta[r * C:]
        logits = z @ A + b
        logits -= logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits).sum(axis=1))
        p = np.exp(logits - lse[:, None])
        loss = float(np.mean(lse - logits[np.arange(n), yi])) + 0.5 * lam * float((A * A).sum())
        d = (p - Y) / n
        gA = z.T @ d + lam * A
        gb = d.sum(axis=0)
        return loss, np.concatenate([gA.ravel(), gb])

    res = optimize.minimize(loss_grad, np.zeros(r * C + C), jac=True, method="L-BFGS-B",
                            options={"maxiter": int(max_iter), "gtol": tol, "ftol": 1e-12})
    A = res.x[: r * C].reshape(r, C)
    return LogisticProbe(mean, scale, v @ A, res.x[r * C:].copy(), classes, int(res.nit), bool(res.success))


@dataclass(frozen=True)
class CrossFitResult:
    """Cross-fitted linear-probe accuracy: ``accuracy`` is the mean of the held-out fold accuracies."""

    accuracy: float
    fold_accuracies: tuple[float, ...]
    predictions: tuple[int, ...]  # out-of-fold prediction of every row


def cross_fit_accuracy(features: Any, labels: Any, *, folds: int = 5, seed: int = 0, l2: float = 1.0,
                       max_iter: int = 500) -> CrossFitResult:
    """Stratified k-fold linear probe: train on k-1 folds, predict the held-out fold, for every fold."""
    x = np.asarray(features, np.float64)
    y = _check_labels(labels)
    pred = np.full(y.size, -1, dtype=np.int64)
    accs = []
    for train, test in stratified_folds(y, folds, seed):
        probe = fit_logistic(x[train], y[train], l2=l2, max_iter=max_iter)
        pred[test] = probe.predict(x[test])
        accs.append(float(np.mean(pred[test] == y[test])))
    return CrossFitResult(float(np.mean(accs)), tuple(accs), tuple(int(p) for p in pred))


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def rank_agreement(scores: Any, truth: Any) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho) of ``scores`` vs ``truth``; 0 when either is constant, NaN if any
    score is not finite."""
    from scipy import stats

    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, np.float64)
    if s.shape != t.shape or s.ndim != 1:
        raise DataError(f"scores and truth must be 1-D of equal length, got {s.shape} and {t.shape}")
    if not np.isfinite(s).all() or not np.isfinite(t).all():
        return float("nan"), float("nan")
    if s.size < 2 or np.ptp(s) == 0 or np.ptp(t) == 0:
        return 0.0, 0.0
    return float(stats.kendalltau(s, t).statistic), float(stats.spearmanr(s, t).statistic)


def pick_accuracy(scores: Any, truth: Any) -> tuple[int, float]:
    """(index of the first top-scored model, mean truth over all models tied at the top score)."""
    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, np.float64)
    if not np.isfinite(s).all():
        return -1, float("nan")
    top = np.flatnonzero(s == s.max())
    return int(top[0]), float(t[top].mean())


# ---------------------------------------------------------------------------------------------
# The study of one target (pure)
# ---------------------------------------------------------------------------------------------


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
    from ..selection.transferability import ProbeSet, compute_score

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


def summarize(rows: Sequence[SelectorRow], forward_seconds_per_image: float = float("nan")) -> tuple[SummaryRow, ...]:
    """Mean metrics per (selector, shots) over targets and seeds (NaN rows are left out and counted)."""
    sels = list(dict.fromkeys(r.selector for r in rows))
    # label-free selectors first, then probe zero-shot accuracy, then the scores in order of appearance
    sels.sort(key=lambda sel: (sel not in LABEL_FREE, sel != PROBE_ZS))
    rank = {sel: i for i, sel in enumerate(sels)}
    keys = sorted(dict.fromkeys((r.selector, r.shots) for r in rows), key=lambda k: (rank[k[0]], k[1]))
    out = []
    for sel, shots in keys:
        rs = [r for r in rows if r.selector == sel and r.shots == shots]
        ok = [r for r in rs if math.isfinite(r.tau_zs)]
        imgs = float(np.mean([r.images_per_model for r in rs]))
        out.append(SummaryRow(
            sel, shots, len(rs), len(rs) - len(ok),
            _nanmean([r.tau_zs for r in rs]), _nanmean([r.rho_zs for r in rs]),
            _nanmean([r.tau_lp for r in rs]), _nanmean([r.rho_lp for r in rs]),
            _nanmean([r.pick_acc for r in rs]), _nanmean([r.regret for r in rs]), _nanmean([r.regret_lp for r in rs]),
            imgs, _nanmean([r.seconds for r in rs]), imgs * forward_seconds_per_image,
        ))
    return tuple(out)


def render_plot(result: StudyResult, metric: str = "tau_zs") -> bytes:
    """PNG bytes: mean ``metric`` vs shots per selector (label-free selectors as horizontal lines)."""
    from ..plotting import new_figure, png_bytes

    summ = result.summary()
    fig = new_figure((8, 5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    shots = sorted({s.shots for s in summ if s.shots > 0}) or [1]
    for sel in dict.fromkeys(s.selector for s in summ):
        pts = [(s.shots, getattr(s, metric)) for s in summ if s.selector == sel]
        style = "--" if sel in LABEL_FREE else ("-" if sel == PROBE_ZS else ":")
        lw = 2.5 if sel in LABEL_FREE or sel == PROBE_ZS else 1.4
        if sel in LABEL_FREE:
            ax.plot([shots[0], shots[-1]], [pts[0][1]] * 2, style, lw=lw, label=f"{sel} (no probe)")
        else:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", lw=lw, label=sel)
    ax.set_xscale("log")
    ax.set_xticks(shots)
    ax.set_xticklabels([str(s) for s in shots])
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("probe images per class")
    label = {"tau_zs": "Kendall τ vs zero-shot accuracy", "tau_lp": "Kendall τ vs linear-probe accuracy"}.get(metric, metric)
    ax.set_ylabel(f"mean {label}")
    ax.set_title(f"Score study: {len(result.targets)} target(s), {result.config.repeats} seed(s)")
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    return png_bytes(fig, dpi=None)


# ---------------------------------------------------------------------------------------------
# I/O: a real task with a hub
# ---------------------------------------------------------------------------------------------


def measure_forward_seconds(models: Sequence[Any], refs: Sequence[tuple[str, Any]], *, batch_size: int = 16) -> dict[str, float]:
    """Seconds per image of each trunk's forward pass (decode + preprocess + network), *without* cache."""
    from ..models.runner import group_by_trunk, trunk_features

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
        from ..labeling import LabelStore
        from ..models.offline import imagenet_class_texts, imagenet_wnids

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
    from ..models.runner import embed_images
    from ..reuse.ensemble import zero_shot_probs
    from ..tasks import task_images

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
