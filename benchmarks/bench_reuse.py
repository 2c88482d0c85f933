"""Reuse (MLL ensemble) throughput vs the selected models' forward costs, and peak memory per phase.

Run:  python benchmarks/bench_reuse.py [--n 32] [--members conse-lite0 label-lite0 wnhier-lite1] [--threads 1]
      python benchmarks/bench_reuse.py --smoke   # toy colour models, 8 synthetic images, tiny hub (a test runs it)

Throughput: an ``MLLEnsemble`` over ``--members`` (every class uses all of them, k = len(members)) scores
``--n`` real imagenet-sample images; compared with the sum of each member's own forward (``embed_images`` on
that model alone). Members sharing a trunk run it once inside the ensemble, so ``sum/ensemble`` > 1 there.

Memory: each phase runs in a fresh child process and reports tracemalloc's peak (Python-side allocations,
numpy included; torch's allocator is not traced) and ru_maxrss (whole process):
``labeling`` (label_models of the lite0 trunk's three models on the N images), ``selection`` (synthetic hub,
2,000 nodes x 50 models, 100 classes: fast-path index build + estimate, then the independent reference of
Eq. 5-7, ``reference_mll.reference_estimate``, over the labels read into RAM) and ``reuse`` (the ensemble
above). No assertions. ``--smoke`` swaps the EfficientNet members for the toy colour models (no weights),
the real images for synthetic ones and the hub for 120 nodes x 3 models x 12 classes: seconds, no data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pin_threads, rss_mb, synthetic_images, thread_report  # noqa: E402


def _selection_for(models, classes):
    import numpy as np

    from vlmhub.selection.mll import ClassSelection, MLLConfig, Selection
    from vlmhub.tasks import Task

    task = Task("imagenet-sample-subset", tuple(classes))
    ranked = tuple((m, 1.0, 1.0) for m in models)
    cls = tuple(ClassSelection(c, ranked, ()) for c in classes)
    M, C = len(models), len(classes)
    return Selection(task, tuple(models), cls, M, MLLConfig(k_models=M), np.ones((M, C)), np.ones((M, C)))


def _refs(args, tmp: Path):
    """The benchmark's images: real imagenet-sample files, or synthetic ones with ``--smoke``."""
    if args.smoke:
        return synthetic_images(tmp / "images", args.n)
    from bench_labeling import _images

    return _images(args.n)


def _class_names(args) -> list[str]:
    """100 ImageNet class names (WordNet names of imagenet-sample's folders), or the toy colours (smoke)."""
    if args.smoke:
        from vlmhub.models.toy import COLORS

        return list(COLORS)
    from bench_labeling import _images

    from vlmhub.concepts.wordnet import get_wordnet, synset_from_wnid, synset_name
    from vlmhub.settings import get_settings

    classes = sorted({r[1].parent.name for r in _images(1000)})[:100]
    wn = get_wordnet(get_settings())
    return [synset_name(synset_from_wnid(wn, w)) for w in classes]


def phase_reuse(args) -> dict:
    from vlmhub.models import create_model
    from vlmhub.models.runner import embed_images
    from vlmhub.reuse.ensemble import MLLEnsemble
    from vlmhub.settings import Settings

    tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-reuse-"))
    refs = _refs(args, tmp)
    names = _class_names(args)
    settings = Settings(home=tmp / "hub", data_dir=None) if args.smoke else None
    models = {m: create_model(m, settings) for m in args.members}
    for m in models.values():
        getattr(m, "net", None)  # load weights before timing (toy models have none)
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
    shutil.rmtree(tmp, ignore_errors=True)
    return {"n": len(refs), "classes": len(names), "init": t_init, "ensemble": t_ens, "single": single}


def phase_labeling(args) -> dict:
    from bench_labeling import _graph

    from vlmhub.labeling.labeler import label_models
    from vlmhub.models import create_model
    from vlmhub.settings import Settings, get_settings

    with tempfile.TemporaryDirectory() as d:
        refs = _refs(args, Path(d))
        if args.smoke:
            s, ids = Settings(home=Path(d) / "hub", data_dir=None), list(args.members)
        else:
            base = get_settings()
            s = Settings(home=Path(d) / "hub", data_dir=base.data_dir, wordnet_dir=base.wordnet_dir)
            ids = [f"{f}-lite0" for f in ("conse", "label", "wnhier")]
        label_models([create_model(m, s) for m in ids], _graph(refs), s, progress=False)
    return {"n": len(refs), "models": ids}


def phase_selection(args) -> dict:
    import tracemalloc

    import numpy as np
    from _common import make_synthetic_hub
    from reference_mll import reference_estimate

    from vlmhub.labeling.labels import LabelStore, caption_key
    from vlmhub.selection.fastpath import FastEq5

    nodes, n_models, n_classes = (120, 3, 12) if args.smoke else (2000, 50, 100)
    out = {"nodes": nodes, "models": n_models, "classes": n_classes}
    with tempfile.TemporaryDirectory() as d:
        hub = make_synthetic_hub(Path(d) / "h", nodes, n_models)
        ce = hub.class_embeddings(n_classes)
        store = LabelStore(hub.settings)
        tracemalloc.reset_peak()
        fe = FastEq5.from_labels(store, hub.model_ids, hub.graph, hub.settings)
        fast = fe.estimate(ce, np.asarray(hub.node_emb, np.float64))
        out["fast_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        del fe
        tracemalloc.reset_peak()
        g = hub.graph
        image_ids = g.image_ids()
        row = {x: i for i, x in enumerate(image_ids)}
        node_images = [[row[x] for x in n.images] for n in g.nodes]
        keys = [caption_key(n.caption) for n in g.nodes]
        labels = [(store.label(m).images.get(image_ids), store.label(m).captions.get(keys)) for m in hub.model_ids]
        ref = reference_estimate(ce, hub.node_emb, node_images, labels, k_nodes=5)
        out["ref_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        out["ref_equals_fast"] = bool(np.array_equal(ref.P, fast["P"]) and np.allclose(ref.r, fast["r"], atol=1e-12))
    return out


def child(phase: str, args) -> None:
    import tracemalloc

    pin_threads(args.threads)
    tracemalloc.start()
    res = {"labeling": phase_labeling, "selection": phase_selection, "reuse": phase_reuse}[phase](args)
    res["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
    res["maxrss_mb"] = rss_mb()
    print("RESULT " + json.dumps(res))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--members", nargs="+", default=["conse-lite0", "label-lite0", "wnhier-lite1"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--phase", choices=["labeling", "selection", "reuse"], help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="toy colour models, 8 synthetic images, 120-node hub (seconds)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n, args.members = 8, ["toy-a", "toy-b", "toy-c"]
    if args.phase:
        child(args.phase, args)
        return 0
    pin_threads(args.threads)
    print(thread_report())
    results = {}
    for phase in ("reuse", "labeling", "selection"):
        cmd = [sys.executable, __file__, "--phase", phase, "--n", str(args.n), "--threads", str(args.threads),
               "--members", *args.members] + (["--smoke"] if args.smoke else [])
        p = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            print(f"{phase}: failed\n{p.stderr[-2000:]}")
            continue
        results[phase] = json.loads(line[-1][7:])
    r = results.get("reuse")
    if r:
        n, tot = r["n"], sum(r["single"].values())
        what = "SYNTHETIC (smoke)" if args.smoke else "real"
        print(f"\nreuse on {n} {what} images, members {', '.join(r['single'])} (k={len(r['single'])}, {r['classes']} classes)")
        print(f"  ensemble {n / r['ensemble']:.1f} img/s ({r['ensemble']:.2f} s), class-text init {r['init']:.2f} s")
        for m, t in r["single"].items():
            print(f"  {m:<14} alone {n / t:.1f} img/s ({t:.2f} s)")
        print(f"  sum of members' forwards {tot:.2f} s -> ensemble/sum time ratio {r['ensemble'] / tot:.2f} "
              f"(< 1: shared trunks run once; ~1: no overhead beyond the members' forwards)")
    print(f"\n{'phase':<11}{'tracemalloc peak MB':>21}{'ru_maxrss MB':>14}   notes")
    for phase, r in results.items():
        note = ""
        if phase == "selection":
            note = (f"{r['nodes']} nodes x {r['models']} models x {r['classes']} classes: fast path (build+estimate) "
                    f"{r['fast_peak_mb']:.1f} MB, reference (labels in RAM + Eq. 5-7) {r['ref_peak_mb']:.1f} MB (traced), "
                    f"reference == fast: {r['ref_equals_fast']}")
        elif phase == "labeling":
            note = f"{r['n']} images x {', '.join(r['models'])}"
        print(f"{phase:<11}{r['tracemalloc_peak_mb']:>21.1f}{r['maxrss_mb']:>14.0f}   {note}")
    return 0 if len(results) == 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
