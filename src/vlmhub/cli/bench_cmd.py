"""``vlmhub benchmark``: the MLL benchmark over target tasks (Table 1, Figure 3, label quality, ablations).

Writes ``report.md``, CSV tables and PNG plots to ``--out`` (default ``<home>/reports/benchmark``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path

import numpy as np

__all__ = ["register", "cmd_benchmark"]

DEFAULT_TARGETS = "cifar10-test,mnist-test,gtsrb-test,fer2013-test,dtd10,flowers5"


def _csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _md(rows: list[dict], cols: list[str], fmt="{:.3f}") -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = ""
    for r in rows:
        body += "| " + " | ".join(fmt.format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols) + " |\n"
    return head + body


def _png(fig) -> bytes:
    from ..plotting import png_bytes

    return png_bytes(fig, dpi=110, tight=True)


def cmd_benchmark(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from ..evaluation.benchmark import (caption_accuracy, default_ablations, growth_curve, label_quality, load_target,
                                        method_accuracies, modelgpt_picks, run_ablations)
    from ..hub import Hub
    from ..labeling import LabelStore
    from ..selection.captions import class_captions
    from ..storage.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
    from .main import _task

    hub = Hub(args.settings, model_ids=[m for m in args.models.split(",") if m] if args.models else None)
    ids = hub.labeled_model_ids()
    models = hub.models(ids)
    out = Path(args.out) if args.out else hub.settings.home / "reports" / "benchmark"
    quiet = args.quiet
    t0 = time.perf_counter()
    targets = [t for t in args.targets.split(",") if t]
    datas, rs, ps = [], [], []
    sel = hub.selector()
    for t in targets:
        task = _task(t, hub.settings)
        bar = tqdm(total=None, desc=f"models on {task.name}", unit="img", disable=quiet)
        data = load_target(task, models, hub.settings, limit_per_class=args.limit_per_class, progress=bar.update)
        bar.close()
        est = sel.estimate(task)
        datas.append(data)
        rs.append(est["r"])
        ps.append(est["p"])
    # ModelGPT-style text-only baseline
    from ..concepts.wordnet import get_wordnet

    wn = get_wordnet(hub.settings)
    feats, truth = {}, {}
    for data in datas:
        caps = class_captions(data.task, sources=("template", "wordnet"), wordnet=wn, embedder=sel.embedder_)
        feats[data.task.name] = {m.id: (m.spec.imagenet_top1 or 0.0, caption_accuracy(m, data.task, caps)) for m in models}
        truth[data.task.name] = data.model_accuracy()
    picks = modelgpt_picks(feats, truth)
    rows = []
    for data, r in zip(datas, rs):
        acc = method_accuracies(data, models, r, ids, modelgpt_pick=picks[data.task.name], weighting=args.weighting)
        rows.append({"dataset": data.task.name, "images": len(data.labels), **acc})
    methods = [k for k in rows[0] if k not in ("dataset", "images")]
    mean = {"dataset": "mean", "images": sum(r["images"] for r in rows), **{m: float(np.mean([r[m] for r in rows])) for m in methods}}
    rows_all = rows + [mean]
    # label quality
    lq = []
    for data, p in zip(datas, ps):
        lq.append({"dataset": data.task.name, **label_quality(data, p, ids)})
    # growth
    growth = growth_curve(datas, rs, ids, models, k=3, orders=args.orders, weighting=args.weighting)
    # ablations
    abl = []
    if not args.no_ablations:
        store = LabelStore(hub.settings)
        version = hub.graph().version
        rends = set.intersection(*(set(store.label(m).renditions(version)) for m in ids))  # covered by every model
        variants = default_ablations(sorted(rends))
        bar = tqdm(total=len(variants), desc="ablations", disable=quiet)
        abl = run_ablations(hub, variants, datas, progress=bar.update)
        bar.close()
    seconds = time.perf_counter() - t0

    # ---- write ---------------------------------------------------------------------------------------
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "methods.csv", _csv(rows_all))
    atomic_write_text(out / "label_quality.csv", _csv(lq))
    if abl:
        atomic_write_text(out / "ablations.csv", _csv([a for a in abl if "skipped" not in a]))
    M = len(ids)
    grow_rows = [{"hub_size": n + 1, **{f"{k}_mean": float(v[:, n].mean()) for k, v in growth.items()},
                  **{f"{k}_p10": float(np.percentile(v[:, n], 10)) for k, v in growth.items()},
                  **{f"{k}_p90": float(np.percentile(v[:, n], 90)) for k, v in growth.items()}} for n in range(M)]
    atomic_write_text(out / "growth.csv", _csv(grow_rows))

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = np.arange(1, M + 1)
    for name, color in (("MLL", "C0"), ("INB", "C1"), ("best_single", "C2")):
        v = growth[name]
        label = {"MLL": "MLL (k=3, label-free)", "INB": "INB", "best_single": "best single (in hindsight, uses labels)"}[name]
        ax.plot(xs, v.mean(0), color=color, label=label)
        ax.fill_between(xs, np.percentile(v, 10, 0), np.percentile(v, 90, 0), color=color, alpha=0.2)
    ax.set_xlabel("models in hub")
    ax.set_ylabel(f"mean accuracy over {len(datas)} targets")
    ax.set_title(f"Hub growth ({args.orders} random orders, 10-90% band)")
    ax.legend()
    atomic_write_bytes(out / "growth.png", _png(fig))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    w = 0.8 / len(methods)
    for i, m in enumerate(methods):
        ax.bar(np.arange(len(rows_all)) + i * w, [r[m] for r in rows_all], w, label=m)
    ax.set_xticks(np.arange(len(rows_all)) + 0.4 - w / 2)
    ax.set_xticklabels([r["dataset"] for r in rows_all], rotation=20)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, ncol=4)
    atomic_write_bytes(out / "methods.png", _png(fig))
    plt.close(fig)

    report = [f"# vlmhub benchmark\n\nHub: {M} models ({', '.join(ids)}); graph {hub.graph().version}; "
              f"{args.limit_per_class} images per class (seeded); weighting {args.weighting}; {seconds:.0f} s.\n",
              "## Accuracy per target\n", _md(rows_all, ["dataset", "images"] + methods),
              "\n![methods](methods.png)\n\n## Hub growth\n",
              f"Mean accuracy at 1 model: MLL {growth['MLL'][:, 0].mean():.3f}, INB {growth['INB'][:, 0].mean():.3f}; "
              f"at {M} models: MLL {growth['MLL'][:, -1].mean():.3f}, INB {growth['INB'][:, -1].mean():.3f}, "
              f"best single {growth['best_single'][:, -1].mean():.3f}.\n\n![growth](growth.png)\n",
              "\n## Label quality (Spearman of p(m,y) with true per-class recall)\n",
              _md(lq, ["dataset", "per_class_rho", "per_model_rho", "dataset_rho"], "{:+.3f}")]
    if abl:
        done = [a for a in abl if "skipped" not in a]
        cols = ["group", "variant", "mean/k1", "mean/k3"] + [f"{d.task.name}/k1" for d in datas]
        report += ["\n## Ablations (MLL accuracy)\n", _md(done, cols)]
        for a in abl:
            if "skipped" in a:
                report.append(f"- not run: {a['variant']}: {a['skipped']}")
    atomic_write_text(out / "report.md", "\n".join(report))
    summary = {"targets": [d.task.name for d in datas], "accuracy": {r["dataset"]: {m: round(r[m], 4) for m in methods} for r in rows_all},
               "label_quality": lq, "growth_end": {k: float(v[:, -1].mean()) for k, v in growth.items()},
               "growth_start": {k: float(v[:, 0].mean()) for k, v in growth.items()},
               "ablations": abl, "out": str(out), "seconds": round(seconds, 1)}
    atomic_write_json(out / "summary.json", summary)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print("\n".join(report))
        print(f"\nwritten to {out}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    sp = subparsers.add_parser("benchmark", help="the MLL benchmark: methods x targets, hub growth, label quality, ablations")
    sp.add_argument("--targets", default=DEFAULT_TARGETS, help="target task folders or shared target names, comma-separated")
    sp.add_argument("--limit-per-class", type=int, default=50, help="seeded images per class (default 50)")
    sp.add_argument("--orders", type=int, default=30, help="random hub orders for the growth curve (default 30)")
    sp.add_argument("--weighting", choices=["entropy", "inverse_entropy", "uniform"], default="inverse_entropy")
    sp.add_argument("--no-ablations", action="store_true")
    sp.add_argument("--models", help="comma-separated model ids (default: the whole hub)")
    sp.add_argument("--out", help="output folder (default <home>/reports/benchmark)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.set_defaults(func=cmd_benchmark)
    return sp
