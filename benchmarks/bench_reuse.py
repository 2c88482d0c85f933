"""Reuse (MLL ensemble) throughput vs the selected models' forward costs, and peak memory per phase.

Run:  python benchmarks/bench_reuse.py [--n 32] [--members conse-lite0 label-lite0 wnhier-lite1] [--threads 1]

Throughput: an ``MLLEnsemble`` over ``--members`` (every class uses all of them, k = len(members)) scores
``--n`` real imagenet-sample images; compared with the sum of each member's own forward (``embed_images`` on
that model alone). Members sharing a trunk run it once inside the ensemble, so ``sum/ensemble`` > 1 there.

Memory: each phase runs in a fresh child process and reports tracemalloc's peak (Python-side allocations,
numpy included; torch's allocator is not traced) and ru_maxrss (whole process):
``labeling`` (label_models of the lite0 trunk's three models on the N images), ``selection`` (synthetic hub,
2,000 nodes x 50 models, 100 classes: fast-path index build + estimate, then the reference estimate) and
``reuse`` (the ensemble above). No assertions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pin_threads, rss_mb, thread_report  # noqa: E402


def _selection_for(models, classes):
    import numpy as np

    from vlmhub.selection.mll import ClassSelection, MLLConfig, Selection
    from vlmhub.tasks import Task

    task = Task("imagenet-sample-subset", tuple(classes))
    ranked = tuple((m, 1.0, 1.0) for m in models)
    cls = tuple(ClassSelection(c, ranked, ()) for c in classes)
    M, C = len(models), len(classes)
    return Selection(task, tuple(models), cls, M, MLLConfig(k_models=M), np.ones((M, C)), np.ones((M, C)))


def phase_reuse(args) -> dict:
    from bench_labeling import _images

    from vlmhub.models import create_model
    from vlmhub.models.runner import embed_images
    from vlmhub.reuse.ensemble import MLLEnsemble

    refs = _images(args.n)
    classes = sorted({r[1].parent.name for r in _images(1000)})[:100]
    from vlmhub.concepts.wordnet import get_wordnet, synset_from_wnid, synset_name
    from vlmhub.settings import get_settings

    wn = get_wordnet(get_settings())
    names = [synset_name(synset_from_wnid(wn, w)) for w in classes]
    models = {m: create_model(m) for m in args.members}
    for m in models.values():
        _ = m.net
    t = time.perf_counter()
    ens = MLLEnsemble(_selection_for(list(models), names), models)
    t_init = time.perf_counter() - t
    ens.scores(refs[:2])  # warm-up
    t = time.perf_counter()
    ens.scores(refs)
    t_ens = time.perf_counter() - t
    single = {}
    for mid, m in models.items():
        t = time.perf_counter()
        embed_images([m], refs)
        single[mid] = time.perf_counter() - t
    return {"n": len(refs), "init": t_init, "ensemble": t_ens, "single": single}


def phase_labeling(args) -> dict:
    from bench_labeling import _graph, _images

    from vlmhub.labeling.labeler import label_models
    from vlmhub.models import create_model
    from vlmhub.settings import Settings, get_settings

    refs = _images(args.n)
    base = get_settings()
    with tempfile.TemporaryDirectory() as d:
        s = Settings(home=Path(d), data_dir=base.data_dir, wordnet_dir=base.wordnet_dir)
        models = [create_model(f"{f}-lite0", s) for f in ("conse", "label", "wnhier")]
        label_models(models, _graph(refs), s, progress=False)
    return {"n": len(refs)}


def phase_selection(args) -> dict:
    import numpy as np
    from _common import make_synthetic_hub

    from vlmhub.labeling.labels import LabelStore
    from vlmhub.selection.fastpath import FastEq5
    from vlmhub.selection.mll import MLLConfig, MLLSelector
    from vlmhub.tasks import Task

    out = {}
    with tempfile.TemporaryDirectory() as d:
        hub = make_synthetic_hub(Path(d) / "h", 2000, 50)
        import tracemalloc

        tracemalloc.reset_peak()
        fe = FastEq5.from_labels(LabelStore(hub.settings), hub.model_ids, hub.graph, hub.settings)
        ce = hub.class_embeddings(100)
        fe.estimate(ce, np.asarray(hub.node_emb, np.float64))
        out["fast_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.reset_peak()
        sel = MLLSelector(hub.settings, MLLConfig(text_embedder="hashing")).fit(hub.model_ids, hub.graph)
        sel.node_emb_ = hub.node_emb
        sel.task_embeddings = lambda _t: (ce, [[] for _ in range(len(ce))])
        sel.estimate(Task("t", tuple(f"c{i}" for i in range(100))))
        out["ref_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    return out


def child(phase: str, args) -> None:
    import tracemalloc

    pin_threads(args.threads)
    tracemalloc.start()
    res = {"labeling": phase_labeling, "selection": phase_selection, "reuse": phase_reuse}[phase](args)
    res["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    res["maxrss_mb"] = rss_mb()
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--members", nargs="+", default=["conse-lite0", "label-lite0", "wnhier-lite1"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--phase", choices=["labeling", "selection", "reuse"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        child(args.phase, args)
        return
    pin_threads(args.threads)
    print(thread_report())
    results = {}
    for phase in ("reuse", "labeling", "selection"):
        cmd = [sys.executable, __file__, "--phase", phase, "--n", str(args.n), "--threads", str(args.threads), "--members", *args.members]
        p = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            print(f"{phase}: failed\n{p.stderr[-2000:]}")
            continue
        results[phase] = json.loads(line[-1][7:])
    r = results.get("reuse")
    if r:
        n, tot = r["n"], sum(r["single"].values())
        print(f"\nreuse on {n} real images, members {', '.join(r['single'])} (k={len(r['single'])}, 100 classes)")
        print(f"  ensemble {n / r['ensemble']:.1f} img/s ({r['ensemble']:.2f} s), class-text init {r['init']:.2f} s")
        for m, t in r["single"].items():
            print(f"  {m:<14} alone {n / t:.1f} img/s ({t:.2f} s)")
        print(f"  sum of members' forwards {tot:.2f} s -> ensemble/sum time ratio {r['ensemble'] / tot:.2f} "
              f"(< 1: shared trunks run once; ~1: no overhead beyond the members' forwards)")
    print(f"\n{'phase':<11}{'tracemalloc peak MB':>21}{'ru_maxrss MB':>14}   notes")
    for phase, r in results.items():
        note = ""
        if phase == "selection":
            note = f"fast path (build+estimate) {r['fast_peak_mb']:.0f} MB, reference estimate {r['ref_peak_mb']:.0f} MB (traced)"
        print(f"{phase:<11}{r['tracemalloc_peak_mb']:>21.0f}{r['maxrss_mb']:>14.0f}   {note}")


if __name__ == "__main__":
    main()
