"""``vlmhub`` command line: thin wrappers over :class:`vlmhub.Hub` and friends.

Every :class:`~vlmhub.errors.VlmhubError` becomes ``vlmhub: error: <message>`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser"]


def _settings(args):
    from ..settings import Settings

    kw = {}
    if getattr(args, "home", None):
        kw["home"] = Path(args.home)
    if getattr(args, "data_dir", None):
        kw["data_dir"] = Path(args.data_dir)
    s = Settings(**kw)
    args.settings = s
    return s


def _hub(args):
    from ..hub import Hub

    ids = [m for m in args.models.split(",") if m] if getattr(args, "models", None) else None
    return Hub(_settings(args), model_ids=ids)


#: the registered image sets that are concept samples, not target tasks
_CONCEPT_SETS = ("imagenet-sample", "tiny-imagenet-val", "imagenette-val", "shape-renditions")


def _task(arg: str, settings):
    from ..errors import TaskError
    from ..tasks import load_task

    from ..assets import find_image_set, load_registry

    p = Path(arg)
    if not p.exists():
        p = find_image_set(arg, settings) or p  # a registered set that is nowhere: MissingAssetError (fetch hint)
    if not p.exists():
        import difflib

        targets = sorted(a.name for a in load_registry().assets if a.kind == "images" and a.name not in _CONCEPT_SETS)
        close = difflib.get_close_matches(arg, targets, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else f" Shared targets: {', '.join(targets)}."
        raise TaskError(f"task {arg!r} not found: pass a task JSON file, a task folder with dataset.json, or a shared "
                        f"target name.{hint}")
    return load_task(p)


def _config(args) -> dict:
    cfg = {}
    if getattr(args, "alpha", None) is not None:
        cfg["alpha"] = args.alpha
    if getattr(args, "nodes", None) is not None:
        cfg["k_nodes"] = args.nodes
    if getattr(args, "metric", None):
        cfg["metric"] = args.metric
    if getattr(args, "captions", None):
        cfg["caption_sources"] = tuple(s for s in args.captions.split(",") if s)
    if getattr(args, "normalize_z", False):
        cfg["normalize_z"] = True
    if getattr(args, "rendition", None):
        cfg["rendition"] = args.rendition
    return cfg


def _writable_file(arg: str, option: str) -> Path:
    """``arg`` as an output file path, or a one-line error if it names a folder or an unwritable place."""
    from ..errors import DataError

    p = Path(arg)
    if p.is_dir():
        raise DataError(f"{option} {arg} is a folder. Name a file inside it, e.g. {p / 'out.png'}.")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) or str(p.resolve()).startswith(("/proc/", "/sys/")):
        raise DataError(f"{option} {arg}: cannot write there ({parent} is not a writable folder). Choose another path.")
    return p


def _write_plot(arg: str, png: bytes) -> None:
    from ..errors import DataError
    from ..storage.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(_writable_file(arg, "--plot"), png)
    except OSError as exc:
        raise DataError(f"--plot {arg}: cannot write the file ({exc.strerror or exc}). Choose another path.") from None
    print(f"wrote {arg}", file=sys.stderr)


def _ray_options(args):
    """``--ray [ADDRESS]`` / ``--ray-workers`` as :class:`~vlmhub.labeling.ray_backend.RayOptions` (``None``: no Ray).
    ``--ray`` alone: ``VLMHUB_RAY_ADDRESS``, else a local Ray for the command."""
    if getattr(args, "ray", None) is None:
        return None
    from ..labeling.ray_backend import RayOptions

    workers = args.ray_workers if args.ray_workers is not None else args.settings.num_workers
    return RayOptions(address=args.ray or None, workers=workers)


def cmd_label(args) -> int:
    from ..concepts.renditions import Rendition
    from ..errors import ConfigError

    hub = _hub(args)
    samples = [s for s in args.samples.split(",") if s] if args.samples else None
    rends = [r for r in args.renditions.split(",") if r]
    bad = [r for r in rends if r not in {x.value for x in Rendition}]
    if bad:  # checked before the graph is built: nothing is written for a bad option
        raise ConfigError(f"unknown rendition(s) {bad}; use any of {[x.value for x in Rendition]}.")
    hub.model_ids  # unknown model ids fail here, before the graph is built
    graph = hub.build_graph(samples, max_images=args.max_images, max_per_concept=args.max_per_concept)
    print(f"semantic graph {graph.version}: {len(graph)} nodes, {len(graph.image_ids())} sample images "
          f"from {', '.join(graph.sample_sets)}", file=sys.stderr)
    report = hub.label(force=args.force, progress=not args.quiet, graph=graph, renditions=rends, ray=_ray_options(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        for key, sec in report.seconds.items():
            print(f"labeled trunk {key} in {sec:.1f} s")
        if report.skipped:
            print(f"already labeled: {', '.join(report.skipped)}")
        print(f"labels in {hub.settings.labels_dir} (graph {graph.version})")
    return 0


def cmd_select(args) -> int:
    from ..selection.config import SelectionConfig

    hub = _hub(args)
    task = _task(args.task, hub.settings)
    cfg = _config(args)
    sc = SelectionConfig(k=args.k, alpha=cfg.get("alpha"), k_nodes=cfg.get("k_nodes"), metric=cfg.get("metric"))
    if args.plot:
        _writable_file(args.plot, "--plot")
    sel = hub.select(task, k=sc, **cfg)
    if args.plot:
        from ..selection.plots import selection_heatmap_png

        _write_plot(args.plot, selection_heatmap_png(sel))
    print(json.dumps(sel.to_dict(), indent=1) if args.json else sel.format())
    return 0


def cmd_predict(args) -> int:
    from ..errors import ConfigError
    from ..selection.config import SelectionConfig, check_int

    hub = _hub(args)
    task = _task(args.task, hub.settings)
    cfg = _config(args)
    SelectionConfig(k=args.k, alpha=cfg.get("alpha"), k_nodes=cfg.get("k_nodes"), metric=cfg.get("metric"),
                    weighting=args.weighting)
    check_int("--batch-size", args.batch_size, 1, 100_000)
    ray = _ray_options(args)
    parquet = bool(args.out) and args.out.lower().endswith(".parquet")
    if ray is not None and not parquet:
        raise ConfigError("--ray writes Parquet: pass --out FILE.parquet (e.g. --out preds.parquet).")
    if parquet and ray is None:
        raise ConfigError(f"--out {args.out}: Parquet output is written on Ray; add --ray (pip install 'vlmhub[ray]') "
                          "or name a .csv file.")
    if args.out:
        _writable_file(args.out, "--out")
        from ..imaging import image_files
        from ..reuse.batch import BatchPredictor
        from ..reuse.job import predict_to_csv

        files = image_files(args.images)
        predictor = BatchPredictor(task, hub=hub, k=args.k, weighting=args.weighting, selection=_config(args))
        if ray is not None:
            from ..reuse.ray_predict import predict_to_parquet_ray

            report = predict_to_parquet_ray(predictor, files, args.out, batch_size=args.batch_size, restart=args.restart,
                                            progress=not args.quiet, ray=ray)
        else:
            report = predict_to_csv(predictor, files, args.out, batch_size=args.batch_size, restart=args.restart,
                                    progress=not args.quiet)
        if args.json:
            print(json.dumps(report.to_dict(), indent=1))
        else:
            print(f"wrote {report.images} predictions to {report.out} ({report.computed} computed, "
                  f"{report.resumed} from an earlier run, {report.seconds:.1f} s)", file=sys.stderr)
        return 0
    rows = hub.predict(task, args.images, k=args.k, weighting=args.weighting, **_config(args))
    if args.json:
        print(json.dumps({"task": task.name, "predictions": rows}, indent=1))
    else:
        for r in rows:
            print(f"{r['image']}\t{r['class']}\t{r['confidence']:.3f}")
    return 0


def cmd_evaluate(args) -> int:
    from ..errors import TaskError
    from ..evaluation import evaluate_task

    hub = _hub(args)
    task = _task(args.task_dir, hub.settings)
    from ..selection.config import SelectionConfig

    cfg = _config(args)
    SelectionConfig(k=args.k, alpha=cfg.get("alpha"), k_nodes=cfg.get("k_nodes"), metric=cfg.get("metric"),
                    weighting=args.weighting)
    if args.limit_per_class is not None and args.limit_per_class < 1:
        raise TaskError(f"--limit-per-class must be a whole number >= 1 (got {args.limit_per_class}); omit it to use every image.")
    if args.plot:
        _writable_file(args.plot, "--plot")
    if task.root is None:
        raise TaskError(f"{args.task_dir} is a task file without images; evaluate needs a task folder (ImageFolder + dataset.json).")
    selector = hub.selector(**_config(args))  # fails early, with the fix, if labels are missing
    res = evaluate_task(task, hub.models(selector.model_ids_), selector, hub.settings, weighting=args.weighting,
                        limit_per_class=args.limit_per_class, progress=not args.quiet)
    if args.plot:
        from ..selection.plots import selection_vs_truth_png

        key = max(res.selection_objects, key=lambda s: int(s[1:]))
        _write_plot(args.plot, selection_vs_truth_png(res.selection_objects[key], res.per_class))
    print(json.dumps(res.to_dict(detail=args.detail), indent=1) if args.json else res.format())
    return 0


def cmd_demo(args) -> int:
    """Label the offline default hub and evaluate every shared target: the README's main job."""
    from ..evaluation import evaluate_task

    hub = _hub(args)
    print(f"vlmhub demo: hub home {hub.settings.home}", file=sys.stderr)
    graph = hub.build_graph(None)
    print(f"semantic graph {graph.version}: {len(graph)} WordNet nodes, {len(graph.image_ids())} sample images", file=sys.stderr)
    hub.label(graph=graph, progress=not args.quiet)
    targets = [t for t in args.targets.split(",") if t]
    rows = []
    for t in targets:
        task = _task(t, hub.settings)
        res = evaluate_task(task, hub.models(hub.labeled_model_ids()), hub.selector(), hub.settings,
                            limit_per_class=args.limit_per_class, progress=not args.quiet)
        rows.append(res)
        print(res.format(), file=sys.stderr)
    methods = list(rows[0].accuracy) if rows else []
    print("\n| dataset | images | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for r in rows:
        print(f"| {r.dataset} | {r.n_images} | " + " | ".join(f"{r.accuracy[m]:.3f}" for m in methods) + " |")
    if rows:
        print("| **mean** | | " + " | ".join(f"**{sum(r.accuracy[m] for r in rows) / len(rows):.3f}**" for m in methods) + " |")
    sel = hub.select(_task(targets[0], hub.settings), k=min(3, len(hub.labeled_model_ids())))  # --models may name fewer
    print("\nWhat MLL chose for " + targets[0] + " (no model ran to choose):\n" + sel.format())
    return 0


def cmd_serve(args) -> int:
    from ..errors import ConfigError
    from ..service import ServiceLimits, serve

    tables = {}
    for item in args.table or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--table {item!r} must be NAME=PATH (a generic-format CSV), e.g. --table mine=results.csv.")
        if not Path(path).is_file():
            raise ConfigError(f"--table {name}: {path} does not exist. Pass the path of a generic-format CSV.")
        tables[name] = Path(path).resolve()
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a TCP port; use 1-65535.")
    limits = ServiceLimits.from_settings(args.settings, max_images=args.max_images)
    print(f"vlmhub: serving hub {args.settings.home} on http://{args.host}:{args.port} (API schema at /docs)", file=sys.stderr)
    serve(args.host, args.port, preload=not args.no_preload, settings=args.settings, tables=tables, limits=limits)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlmhub", description="Select and reuse vision-language models with Model Label Learning.")
    p.add_argument("--home", help="hub folder (default: $VLMHUB_HOME or ~/.cache/vlmhub)")
    p.add_argument("--data-dir", help="data folder laid out like the shared mirror, looked in first (default: $VLMHUB_DATA; "
                   "then the user data dir, then shared/data beside a checkout; see `vlmhub data list`)")
    p.add_argument("--version", action="version", version="vlmhub 0.1.0")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp, models=True):
        if models:
            sp.add_argument("--models", help="comma-separated model ids (default: the whole hub)")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    def selection_opts(sp):
        sp.add_argument("--k", type=int, default=3, help="models per class (default 3)")
        sp.add_argument("--alpha", type=float, help="class vs. global weight of Eq. 7 (default 0.7)")
        sp.add_argument("--nodes", type=int, help="graph nodes matched per class (default 5)")
        sp.add_argument("--metric", choices=["precision", "f1"], help="Eq. 5 precision (default) or the official code's F1")
        sp.add_argument("--captions", help="caption sources, comma-separated: user,template,wordnet,llm")
        sp.add_argument("--normalize-z", action="store_true", help="normalise each class's column of Z to sum 1")
        sp.add_argument("--rendition", help="read labels under a rendition of the samples: original (default), "
                        "lowres32, gray, gray48, or auto (from the task's domain); see docs/mll.md")

    def ray_opts(sp, what):
        sp.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help=f"{what} on a Ray cluster (pip install 'vlmhub[ray]'): ADDRESS of a running one (auto, "
                        "ray://head:10001); without it $VLMHUB_RAY_ADDRESS, else a local Ray for this command")
        sp.add_argument("--ray-workers", type=int, metavar="N",
                        help="with --ray: Ray actors per stage (default $VLMHUB_WORKERS or 2)")

    sp = sub.add_parser("label", help="label every hub model not yet labeled (Eq. 2-4)")
    common(sp)
    sp.add_argument("--samples", help="concept-sample sets (names under images/ or folders), comma-separated")
    sp.add_argument("--max-images", type=int, default=75, help="images per graph node (default 75)")
    sp.add_argument("--max-per-concept", type=int, help="use at most N images of each concept folder")
    sp.add_argument("--force", action="store_true", help="recompute labels from scratch")
    sp.add_argument("--renditions", default="original",
                    help="label the samples under these renditions too, comma-separated (original,lowres32,gray,gray48)")
    ray_opts(sp, "compute the caption and image embeddings")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_label)

    sp = sub.add_parser("select", help="choose models per class for a task (no model runs)")
    sp.add_argument("task", help="task JSON file, task folder, or shared target name")
    common(sp)
    selection_opts(sp)
    sp.add_argument("--plot", metavar="PNG", help="also write a heatmap of r per model and class, chosen models boxed")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_select)

    sp = sub.add_parser("predict", help="classify images with the selected ensemble (Eq. 8-10)")
    sp.add_argument("task")
    sp.add_argument("images", nargs="+", help="image files or folders")
    common(sp)
    selection_opts(sp)
    sp.add_argument("--weighting", choices=["entropy", "inverse_entropy", "uniform"], default="inverse_entropy",
                    help="ensemble weights: inverse_entropy (default, official code; better on real data), entropy (Eq. 9 as printed), uniform")
    sp.add_argument("--out", help="write image,class,confidence rows to this CSV (or, with --ray, Parquet file), "
                    "resumably (re-run the same command after a crash to continue)")
    sp.add_argument("--batch-size", type=int, default=64, help="images per batch with --out (default 64)")
    sp.add_argument("--restart", action="store_true", help="with --out: discard an unfinished earlier run")
    ray_opts(sp, "predict")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_predict)

    sp = sub.add_parser("evaluate", help="accuracy of INB, best single, MLL k=1/3 and the per-class oracle")
    sp.add_argument("task_dir", help="ImageFolder with dataset.json (or a shared target name)")
    common(sp)
    selection_opts(sp)
    sp.add_argument("--weighting", choices=["entropy", "inverse_entropy", "uniform"], default="inverse_entropy",
                    help="ensemble weights: inverse_entropy (default, official code; better on real data), entropy (Eq. 9 as printed), uniform")
    sp.add_argument("--limit-per-class", type=int, help="evaluate on a seeded subset of N images per class")
    sp.add_argument("--detail", action="store_true", help="with --json: per-model accuracy, per-class recall and selections")
    sp.add_argument("--plot", metavar="PNG", help="also write MLL's estimate vs the true per-class recall, chosen models boxed")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("demo", help="label the offline hub and evaluate the shared targets (README main job)")
    common(sp)
    sp.add_argument("--targets", default="cifar10-test,mnist-test,gtsrb-test,fer2013-test,dtd10,flowers5")
    sp.add_argument("--limit-per-class", type=int, default=20, help="seeded images per class and target (default 20)")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("serve", help="serve select / predict / rank-models over HTTP (needs vlmhub[service])")
    sp.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    sp.add_argument("--port", type=int, default=8000)
    sp.add_argument("--table", action="append", metavar="NAME=PATH",
                    help="also offer a generic-format result table under NAME (repeatable); clients cannot name paths")
    sp.add_argument("--max-images", type=int, default=None,
                    help="images per /v1/predict request (default $VLMHUB_MAX_REQUEST_IMAGES or 256)")
    sp.add_argument("--no-preload", action="store_true", help="do not fit the MLL selector at startup")
    sp.set_defaults(func=cmd_serve)

    import importlib

    for mod in ("models_cmd", "tables_cmd", "study_cmd", "bench_cmd", "data_cmd", "db_cmd", "submit_cmd"):
        name = f"vlmhub.cli.{mod}"
        try:
            m = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not part of this build
                continue
            raise
        m.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from ..errors import VlmhubError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not hasattr(args, "settings"):
        _settings(args)
    try:
        return int(args.func(args) or 0)
    except VlmhubError as exc:
        print(f"vlmhub: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vlmhub: interrupted; finished work is kept, run the command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
