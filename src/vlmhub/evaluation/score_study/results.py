"""Score study, results: typed frozen records of what the study measured, their means, Markdown / CSV / JSON."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import DataError
from .protocol import LABEL_FREE, PROBE_ZS, StudyConfig

__all__ = ["TargetData", "TargetTruth", "SelectorRow", "SummaryRow", "TargetStudy", "StudyResult", "summarize",
           "combine_results"]


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


def summarize(rows: Sequence[SelectorRow], forward_seconds_per_image: float = float("nan")) -> tuple[SummaryRow, ...]:
    """Mean metrics per (selector, shots) over targets and seeds: NaN metrics are left out of the means;
    ``n_failed`` counts the rows whose score failed (non-finite) for some model."""
    sels = list(dict.fromkeys(r.selector for r in rows))
    # label-free selectors first, then probe zero-shot accuracy, then the scores in order of appearance
    sels.sort(key=lambda sel: (sel not in LABEL_FREE, sel != PROBE_ZS))
    rank = {sel: i for i, sel in enumerate(sels)}
    keys = sorted(dict.fromkeys((r.selector, r.shots) for r in rows), key=lambda k: (rank[k[0]], k[1]))
    out = []
    for sel, shots in keys:
        rs = [r for r in rows if r.selector == sel and r.shots == shots]
        ok = [r for r in rs if all(math.isfinite(v) for v in r.scores)]
        imgs = float(np.mean([r.images_per_model for r in rs]))
        out.append(SummaryRow(
            sel, shots, len(rs), len(rs) - len(ok),
            _nanmean([r.tau_zs for r in rs]), _nanmean([r.rho_zs for r in rs]),
            _nanmean([r.tau_lp for r in rs]), _nanmean([r.rho_lp for r in rs]),
            _nanmean([r.pick_acc for r in rs]), _nanmean([r.regret for r in rs]), _nanmean([r.regret_lp for r in rs]),
            imgs, _nanmean([r.seconds for r in rs]), imgs * forward_seconds_per_image,
        ))
    return tuple(out)
