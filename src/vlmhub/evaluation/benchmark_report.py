"""Rendering a :class:`~vlmhub.evaluation.benchmark.BenchmarkResult`: Markdown, CSV, PNG plots, ``summary.json``.

:func:`write_benchmark_report` writes what ``vlmhub benchmark --out DIR`` leaves in ``DIR`` (atomically):
``report.md``, ``methods.csv``, ``label_quality.csv``, ``growth.csv``, ``ablations.csv`` (when ablations
ran), ``growth.png``, ``methods.png`` and ``summary.json``. Everything else here is pure (returns text or
bytes).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .benchmark import BenchmarkResult

__all__ = ["csv_text", "markdown_table", "report_markdown", "growth_png", "methods_png", "write_benchmark_report"]


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """CSV of dict rows (columns of the first row; floats with 4 decimals); empty for no rows."""
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def markdown_table(rows: Sequence[dict[str, Any]], cols: Sequence[str], fmt: str = "{:.3f}") -> str:
    """A Markdown table of dict rows (floats formatted with ``fmt``)."""
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = ""
    for r in rows:
        body += "| " + " | ".join(fmt.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols) + " |\n"
    return head + body


def _png(fig) -> bytes:
    from ..plotting import png_bytes

    return png_bytes(fig, dpi=110, tight=True)


def growth_png(result: BenchmarkResult) -> bytes:
    """The hub-growth curve (mean accuracy over targets vs hub size, 10-90 % band over orders) as PNG."""
    from ..plotting import new_figure

    fig = new_figure((6, 4))
    ax = fig.add_subplot(1, 1, 1)
    xs = np.arange(1, len(result.model_ids) + 1)
    for name, color in (("MLL", "C0"), ("INB", "C1"), ("best_single", "C2")):
        v = result.growth[name]
        label = {"MLL": f"MLL (k={result.config.growth_k}, label-free)", "INB": "INB",
                 "best_single": "best single (in hindsight, uses labels)"}[name]
        ax.plot(xs, v.mean(0), color=color, label=label)
        ax.fill_between(xs, np.percentile(v, 10, 0), np.percentile(v, 90, 0), color=color, alpha=0.2)
    ax.set_xlabel("models in hub")
    ax.set_ylabel(f"mean accuracy over {len(result.targets)} targets")
    ax.set_title(f"Hub growth ({result.config.orders} random orders, 10-90% band)")
    ax.legend()
    return _png(fig)


def methods_png(result: BenchmarkResult) -> bytes:
    """Bars of every method's accuracy per target and their mean, as PNG."""
    from ..plotting import new_figure

    rows = result.rows
    methods = result.methods
    fig = new_figure((9, 4))
    ax = fig.add_subplot(1, 1, 1)
    w = 0.8 / len(methods)
    for i, m in enumerate(methods):
        ax.bar(np.arange(len(rows)) + i * w, [r.accuracy[m] for r in rows], w, label=m)
    ax.set_xticks(np.arange(len(rows)) + 0.4 - w / 2)
    ax.set_xticklabels([r.dataset for r in rows], rotation=20)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, ncol=4)
    return _png(fig)


def report_markdown(result: BenchmarkResult) -> str:
    """``report.md``: accuracy per target, hub growth, label quality and the ablations."""
    ids, g, cfg = result.model_ids, result.growth, result.config
    M = len(ids)
    rows = [r.to_dict() for r in result.rows]
    lq = [q.to_dict() for q in result.label_quality]
    report = [f"# vlmhub benchmark\n\nHub: {M} models ({', '.join(ids)}); graph {result.graph_version}; "
              f"{cfg.limit_per_class} images per class (seeded); weighting {cfg.weighting}; {result.seconds:.0f} s.\n",
              "## Accuracy per target\n", markdown_table(rows, ["dataset", "images", *result.methods]),
              "\n![methods](methods.png)\n\n## Hub growth\n",
              f"Mean accuracy at 1 model: MLL {g['MLL'][:, 0].mean():.3f}, INB {g['INB'][:, 0].mean():.3f}; "
              f"at {M} models: MLL {g['MLL'][:, -1].mean():.3f}, INB {g['INB'][:, -1].mean():.3f}, "
              f"best single {g['best_single'][:, -1].mean():.3f}.\n\n![growth](growth.png)\n",
              "\n## Label quality (Spearman of p(m,y) with true per-class recall)\n",
              markdown_table(lq, ["dataset", "per_class_rho", "per_model_rho", "dataset_rho"], "{:+.3f}")]
    if result.ablations:
        done = [dict(a) for a in result.ablations if "skipped" not in a]
        cols = ["group", "variant", "mean/k1", "mean/k3"] + [f"{t}/k1" for t in result.targets]
        report += ["\n## Ablations (MLL accuracy)\n", markdown_table(done, cols)]
        for a in result.ablations:
            if "skipped" in a:
                report.append(f"- not run: {a['variant']}: {a['skipped']}")
    return "\n".join(report)


def write_benchmark_report(result: BenchmarkResult, out: str | Path) -> dict[str, Any]:
    """Write every report file into ``out`` atomically; returns the summary (``summary.json``'s content)."""
    from ..storage.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "methods.csv", csv_text([r.to_dict() for r in result.rows]))
    atomic_write_text(out / "label_quality.csv", csv_text([q.to_dict() for q in result.label_quality]))
    if result.ablations:
        atomic_write_text(out / "ablations.csv", csv_text([dict(a) for a in result.ablations if "skipped" not in a]))
    atomic_write_text(out / "growth.csv", csv_text(result.growth_rows()))
    atomic_write_bytes(out / "growth.png", growth_png(result))
    atomic_write_bytes(out / "methods.png", methods_png(result))
    atomic_write_text(out / "report.md", report_markdown(result))
    summary = result.to_dict(out=str(out))
    atomic_write_json(out / "summary.json", summary)
    return summary
