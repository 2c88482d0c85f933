"""``vlmhub score-study``: label-free MLL vs. label-using transferability scores on real targets.

::

    vlmhub score-study [--targets a,b] [--shots 5,10,50] [--seeds 3] [--eval-per-class 100]
                       [--pool-per-class N] [--scores logme,leep] [--models a,b] [--out DIR] [--json]

For every target (a shared target name or a task folder) the labeled hub's models are scored by every
selector on probe sets of each size, and the scores are compared with the models' true zero-shot and
cross-fitted linear-probe accuracy (:mod:`vlmhub.evaluation.score_study`). Prints a Markdown table
(or JSON with ``--json``); ``--out DIR`` also writes ``score_study.md``, ``score_study_rows.csv``,
``score_study_summary.csv``, ``score_study_truth.csv``, ``score_study.json`` and ``score_study.png``
atomically. Bad input raises :class:`~vlmhub.errors.VlmhubError` (``cli/main.py`` exits 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "cmd_score_study", "DEFAULT_TARGETS", "write_outputs", "report_markdown"]

DEFAULT_TARGETS = "cifar10-test,mnist-test,gtsrb-test,fer2013-test,dtd10,flowers5"


def _ints(text: str, what: str) -> tuple[int, ...]:
    from ..errors import DataError

    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DataError(f"--{what} must be comma-separated integers, e.g. 5,10,50 (got {text!r})") from None
    if not vals:
        raise DataError(f"--{what} is empty; give at least one integer")
    return vals


def _task(arg: str, settings):
    from ..errors import TaskError
    from ..tasks import load_task

    from ..assets import find_image_set

    p = Path(arg)
    if not p.exists():
        p = find_image_set(arg, settings) or p  # a registered set that is nowhere: MissingAssetError (fetch hint)
    if not p.exists():
        raise TaskError(f"target {arg!r} not found: pass a task folder (ImageFolder + dataset.json) or a shared target name.")
    task = load_task(p)
    if task.root is None:
        raise TaskError(f"{arg} is a task file without images; the score study needs a task folder (ImageFolder + dataset.json).")
    return task


def report_markdown(result) -> str:
    """The full Markdown report of a :class:`~vlmhub.evaluation.score_study.StudyResult`."""
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


def write_outputs(result, out: Path) -> list[Path]:
    """Write the report, CSVs, JSON and plot into ``out`` atomically; returns the paths."""
    from ..evaluation.score_study import render_plot
    from ..storage.atomic import atomic_write_bytes, atomic_write_text

    out = Path(out)
    paths = [
        atomic_write_text(out / "score_study.md", "# Score study\n\n" + report_markdown(result)),
        atomic_write_text(out / "score_study_rows.csv", result.rows_csv()),
        atomic_write_text(out / "score_study_summary.csv", result.summary_csv()),
        atomic_write_text(out / "score_study_truth.csv", result.truth_csv()),
        atomic_write_text(out / "score_study.json", json.dumps(result.to_dict(), indent=1) + "\n"),
        atomic_write_bytes(out / "score_study.png", render_plot(result, "tau_zs")),
        atomic_write_bytes(out / "score_study_lp.png", render_plot(result, "tau_lp")),
    ]
    return paths


def cmd_score_study(args: argparse.Namespace) -> int:
    from ..evaluation.score_study import StudyConfig, run_score_study
    from ..hub import Hub
    from ..settings import get_settings

    settings = getattr(args, "settings", None) or get_settings()
    scores = tuple(s for s in args.scores.split(",") if s.strip()) if args.scores else None
    config = StudyConfig(shots=_ints(args.shots, "shots"), repeats=args.seeds, eval_per_class=args.eval_per_class,
                         pool_per_class=args.pool_per_class, folds=args.folds, seed=args.seed, scores=scores)
    models = [m for m in args.models.split(",") if m] if args.models else None
    hub = Hub(settings, model_ids=models)
    tasks = [_task(t.strip(), settings) for t in args.targets.split(",") if t.strip()]
    quiet = bool(args.quiet or args.json)
    progress = None if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    result = run_score_study(hub, tasks, config, model_ids=models, forward_timing_images=args.forward_images,
                             progress=progress)
    if args.out:
        write_outputs(result, Path(args.out))
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(report_markdown(result))
        if args.out:
            print(f"wrote score_study.md/.json/.png and CSVs to {args.out}")
    return 0


def register(subparsers) -> None:
    """Add ``score-study`` to an argparse sub-parser collection."""
    sp = subparsers.add_parser("score-study", help="compare MLL with transferability scores on the shared targets")
    sp.add_argument("--targets", default=DEFAULT_TARGETS, help=f"comma-separated shared target names or task folders (default: {DEFAULT_TARGETS})")
    sp.add_argument("--shots", default="5,10,50", help="probe images per class, comma-separated (default 5,10,50)")
    sp.add_argument("--seeds", type=int, default=3, help="probe-set repeats per size (default 3)")
    sp.add_argument("--eval-per-class", type=int, default=100, help="evaluation images per class (default 100)")
    sp.add_argument("--pool-per-class", type=int, help="probe-pool images per class (default 2 x max shots)")
    sp.add_argument("--folds", type=int, default=5, help="cross-fitting folds of the linear probe (default 5)")
    sp.add_argument("--seed", type=int, default=0, help="base seed of the splits (default 0)")
    sp.add_argument("--scores", help="transferability scores to run, comma-separated (default: all)")
    sp.add_argument("--models", help="comma-separated model ids (default: every labeled hub model)")
    sp.add_argument("--forward-images", type=int, default=16, help="uncached images per trunk to time the forward pass (0: skip)")
    sp.add_argument("--out", help="folder for score_study.md, CSVs, JSON and plots")
    sp.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    sp.set_defaults(func=cmd_score_study)
