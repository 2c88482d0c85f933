"""``vlmhub score-study``: label-free MLL vs. label-using transferability scores on real targets.

::

    vlmhub score-study [--targets a,b] [--shots 5,10,50] [--seeds 3] [--eval-per-class 100]
                       [--pool-per-class N] [--scores logme,leep] [--models a,b] [--out DIR] [--json]

For every target (a shared target name or a task folder) the labeled hub's models are scored by every
selector on probe sets of each size, and the scores are compared with the models' true zero-shot and
cross-fitted linear-probe accuracy (:func:`vlmhub.evaluation.score_study.run_score_study`). Prints a Markdown table
(or JSON with ``--json``); ``--out DIR`` also writes ``score_study.md``, ``score_study_rows.csv``,
``score_study_summary.csv``, ``score_study_truth.csv``, ``score_study.json`` and ``score_study.png``
atomically (:func:`~vlmhub.evaluation.score_study.write_outputs`). This module only parses
arguments and renders the library's result. Bad input raises :class:`~vlmhub.errors.VlmhubError` (``cli/main.py`` exits 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "cmd_score_study", "DEFAULT_TARGETS"]

DEFAULT_TARGETS = "cifar10-test,mnist-test,gtsrb-test,fer2013-test,dtd10,flowers5"  # = evaluation.benchmark.DEFAULT_TARGETS


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


def cmd_score_study(args: argparse.Namespace) -> int:
    from ..evaluation.score_study import StudyConfig, report_markdown, run_score_study, write_outputs
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
