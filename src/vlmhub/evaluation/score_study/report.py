"""Score study, report: the Markdown report, the plots and the files ``vlmhub score-study --out`` writes."""

from __future__ import annotations

import json
from pathlib import Path

from .protocol import LABEL_FREE, PROBE_ZS
from .results import StudyResult

__all__ = ["render_plot", "report_markdown", "write_outputs"]


def render_plot(result: StudyResult, metric: str = "tau_zs") -> bytes:
    """PNG bytes: mean ``metric`` vs shots per selector (label-free selectors as horizontal lines)."""
    from ...plotting import new_figure, png_bytes

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


def report_markdown(result: StudyResult) -> str:
    """The full Markdown report of a :class:`~vlmhub.evaluation.score_study.StudyResult` (what
    ``vlmhub score-study`` prints)."""
    cfg = result.config
    fwd = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.forward_seconds_per_image.items()) or "not measured"
    parts = [
        f"Targets: {', '.join(t.truth.target for t in result.targets)}; shots {list(cfg.shots)}, {cfg.repeats} seed(s), "
        f"up to {cfg.eval_per_class} evaluation and {cfg.pool_size} probe-pool images per class, "
        f"{cfg.folds}-fold cross-fitted linear probe (L2 {cfg.l2}).",
        f"Forward time per image (uncached, per trunk): {fwd}.",
        *[f"{n}." for n in result.notes],
        "",
        "## Summary (means over targets and seeds)",
        "",
        result.summary_markdown(),
        "",
        "## Kendall τ vs zero-shot accuracy, per target",
        "",
        result.target_markdown("tau_zs"),
        "",
        "## Kendall τ vs linear-probe accuracy, per target",
        "",
        result.target_markdown("tau_lp"),
        "",
        "## Regret (zero-shot accuracy of the best model − of the pick), per target",
        "",
        result.target_markdown("regret"),
        "",
        "## Truth",
        "",
        result.truth_markdown(),
        "",
    ]
    return "\n".join(parts)


def write_outputs(result: StudyResult, out: str | Path) -> list[Path]:
    """Write ``score_study.md``, the rows / summary / truth CSVs, ``score_study.json`` and the two plots
    into ``out`` atomically; returns the paths."""
    from ...storage.atomic import atomic_write_bytes, atomic_write_text

    out = Path(out)
    return [
        atomic_write_text(out / "score_study.md", "# Score study\n\n" + report_markdown(result)),
        atomic_write_text(out / "score_study_rows.csv", result.rows_csv()),
        atomic_write_text(out / "score_study_summary.csv", result.summary_csv()),
        atomic_write_text(out / "score_study_truth.csv", result.truth_csv()),
        atomic_write_text(out / "score_study.json", json.dumps(result.to_dict(), indent=1) + "\n"),
        atomic_write_bytes(out / "score_study.png", render_plot(result, "tau_zs")),
        atomic_write_bytes(out / "score_study_lp.png", render_plot(result, "tau_lp")),
    ]
