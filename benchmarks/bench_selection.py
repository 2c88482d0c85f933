"""Selection latency: reference ``MLLSelector.estimate`` vs the fast path (``vlmhub.selection.fastpath``).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_selection.py [--nodes 2000 10000] [--models 6 50 500]
          [--classes 10 100 1000] [--metric precision] [--L 64] [--repeats 5] [--profile]

SYNTHETIC hubs (see ``_common.make_synthetic_hub``): random normalised 384-d embeddings with planted
hierarchical structure, written as real label stores and a real graph in a temporary hub. For every hub
(nodes x models) it prints the fast-path index build time (first ``from_labels``: compute + cache write),
the cached load time, index bytes per model, then per class count the latency of

* ``ref est``   ``MLLSelector.estimate`` as shipped (task caption embedding replaced by the planted class
                 embeddings so text encoding is not timed),
* ``fast est``  ``FastEq5.estimate`` (same Z, P, p, r),
* ``select*``   the shipped ``MLLSelector.select`` with ``estimate`` swapped for the fast one (shows what the
                 remaining per-class Python in ``select`` costs),

with the speed-up ``ref/fast`` and whether P agrees (``==``: identical; else the number of differing
entries — expected only at float32 near-ties of the reference, see the fastpath module docstring).
Combinations over ~8 GB of RAM or ~2 minutes are skipped with the reason. No assertions.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ms, make_synthetic_hub, pin_threads, rss_mb, thread_report, timeit  # noqa: E402

DIM = 384
RAM_LIMIT = 8e9
TIME_LIMIT = 120.0


def _profile_reference(sel, task) -> str:
    """Split the reference estimate into its parts (one call)."""
    from vlmhub.labeling.labels import caption_key
    from vlmhub.selection.mll import class_estimates, node_precision, reuse_scores, transfer_matrix

    cfg = sel.config
    out = {}
    t = time.perf_counter()
    class_emb, _ = sel.task_embeddings(task)
    selected, Z, sims = transfer_matrix(class_emb, sel.node_emb_, cfg.k_nodes, normalize=cfg.normalize_z)
    out["transfer_matrix"] = time.perf_counter() - t
    t = time.perf_counter()
    nodes = [sel.graph_.nodes[i] for i in selected]
    image_ids = sorted({x for n in nodes for x in n.images})
    row = {x: i for i, x in enumerate(image_ids)}
    membership = [(vi, row[x]) for vi, n in enumerate(nodes) for x in n.images]
    cap_keys = [caption_key(n.caption) for n in nodes]
    out["membership (python)"] = time.perf_counter() - t
    tg = tn = 0.0
    P = np.zeros((len(sel.model_ids_), len(nodes)))
    for mi in range(len(sel.model_ids_)):
        t = time.perf_counter()
        a, b = sel._img_tables[mi].get(image_ids), sel._cap_tables[mi].get(cap_keys)
        tg += time.perf_counter() - t
        t = time.perf_counter()
        P[mi] = node_precision(a, b, membership, metric=cfg.metric)
        tn += time.perf_counter() - t
    out["table gathers"] = tg
    out["node_precision (matmul+argmax)"] = tn
    t = time.perf_counter()
    reuse_scores(class_estimates(P, Z), cfg.alpha)
    out["Eq.6-7"] = time.perf_counter() - t
    tot = sum(out.values())
    return ", ".join(f"{k} {1e3 * v:.1f} ms ({100 * v / tot:.0f}%)" for k, v in out.items())


def _profile_fast(fe, class_emb, node64, cfg) -> str:
    from vlmhub.selection.fastpath import fast_transfer_matrix
    from vlmhub.selection.mll import class_estimates, reuse_scores

    out = {}
    t = time.perf_counter()
    selected, Z, sims, top = fast_transfer_matrix(class_emb, node64, cfg.k_nodes, normalize=cfg.normalize_z)
    out["transfer"] = time.perf_counter() - t
    t = time.perf_counter()
    pos, rows, lens = fe.membership.pairs(selected)
    U = np.unique(rows)
    out["pairs+union"] = time.perf_counter() - t
    t = time.perf_counter()
    fe.predictions(selected, U)
    out["predictions (rank lookups+fallback)"] = time.perf_counter() - t
    t = time.perf_counter()
    P = fe.precision_matrix(selected, cfg.metric)
    out["precision_matrix total"] = time.perf_counter() - t
    t = time.perf_counter()
    reuse_scores(class_estimates(P, Z), cfg.alpha)
    out["Eq.6-7"] = time.perf_counter() - t
    st = fe.last_stats
    return ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in out.items()) + (
        f"; |S|={st.n_selected} images={st.n_images} pairs={st.n_pairs} fallback={st.fallback}")


def run_hub(tmp: Path, n_nodes: int, n_models: int, classes: list[int], args) -> None:
    from vlmhub.labeling.labels import LabelStore
    from vlmhub.selection.fastpath import ConfuserIndex, FastEq5, GraphMembership
    from vlmhub.selection.mll import MLLConfig, MLLSelector
    from vlmhub.tasks import Task

    n_images = n_nodes  # half the nodes are leaves with 2 images each
    label_bytes = n_models * (n_images + n_nodes) * DIM * 4
    # the reference keeps every table in RAM; generation holds one model at a time
    if label_bytes * 1.3 > RAM_LIMIT:
        print(f"\n## {n_nodes} nodes x {n_models} models: SKIPPED (labels {label_bytes / 1e9:.1f} GB in RAM > ~8 GB budget)")
        return
    home = tmp / f"hub-{n_nodes}-{n_models}"
    hub = make_synthetic_hub(home, n_nodes, n_models, dim=DIM, seed=n_nodes + n_models)
    g = hub.graph
    pairs = sum(len(n.images) for n in g.nodes)
    print(f"\n## synthetic hub: {n_nodes} nodes, {len(g.image_ids())} images, {pairs} memberships, {n_models} models, "
          f"D={DIM}, labels {label_bytes / 1e6:.0f} MB (written in {hub.seconds:.1f} s)")
    store = LabelStore(hub.settings)
    mem = GraphMembership.from_graph(g)
    # calibrate the build on one model before committing to all of them
    lab = store.label(hub.model_ids[0])
    img, cap = lab.images.get(list(mem.image_ids)), lab.captions.get(list(mem.caption_keys))
    t = time.perf_counter()
    ix = ConfuserIndex.build(img, cap, args.L)
    one = time.perf_counter() - t
    del img, cap
    est_build = one * n_models
    print(f"index build: {1e3 * one:.0f} ms/model (L={args.L}, mean certified prefix {ix.lengths().mean():.1f}), "
          f"{ix.nbytes / 1e3:.0f} kB/model ({ix.ranks.dtype}), est. {est_build:.0f} s for the hub")
    if est_build > args.time_limit:
        print(f"  SKIPPED the rest of this hub: building {n_models} indexes would take ~{est_build:.0f} s > {args.time_limit:.0f} s "
              f"(one-off per graph version; the per-model figure above is the cost)")
        shutil.rmtree(home, ignore_errors=True)
        return
    t = time.perf_counter()
    fe = FastEq5.from_labels(store, hub.model_ids, g, hub.settings, L=args.L, membership=mem)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    fe = FastEq5.from_labels(store, hub.model_ids, g, hub.settings, L=args.L, membership=mem)
    t_load = time.perf_counter() - t
    print(f"FastEq5.from_labels: build+cache {t_build:.1f} s, cached load {t_load:.2f} s, "
          f"index RAM {fe.nbytes / 1e6:.1f} MB ({fe.bytes_per_model() / 1e3:.0f} kB/model)")

    cfg = MLLConfig(metric=args.metric, text_embedder="hashing", k_nodes=5)
    sel = MLLSelector(hub.settings, cfg).fit(hub.model_ids, g)
    sel.node_emb_ = hub.node_emb  # planted text-side caption embeddings
    node64 = np.asarray(hub.node_emb, np.float64)
    print(f"{'classes':>8}{'|S|':>6}{'images':>8}{'fallback':>9}{'ref est ms':>12}{'fast est ms':>12}{'select* ms':>11}"
          f"{'ref/fast':>10}{'P':>8}")
    for C in classes:
        class_emb = hub.class_embeddings(C, seed=C)
        task = Task(f"synthetic-{C}", tuple(f"class {i}" for i in range(C)))
        sel.task_embeddings = lambda _task, e=class_emb: (e, [[] for _ in range(len(e))])
        fast = lambda: fe.estimate(class_emb, node64, k_nodes=cfg.k_nodes, alpha=cfg.alpha, metric=cfg.metric)
        fb, fm, fres = timeit(fast, args.repeats)
        st = fe.last_stats
        # reference: estimate its cost from one call before repeating it
        t = time.perf_counter()
        ref = sel.estimate(task)  # first call also loads the label tables
        t1 = time.perf_counter() - t
        reps = args.repeats if t1 * args.repeats < 30 else 1
        rb, rm, ref = timeit(lambda: sel.estimate(task), reps, warmup=0)
        ndiff = int((ref["P"] != fres["P"]).sum())
        same_sel = np.array_equal(ref["selected"], fres["selected"]) and np.array_equal(ref["Z"], fres["Z"])
        orig = sel.estimate
        sel.estimate = lambda _t: {**fe.estimate(class_emb, node64, k_nodes=cfg.k_nodes, alpha=cfg.alpha, metric=cfg.metric),
                                   "captions": [[] for _ in range(C)]}
        sb, sm, _ = timeit(lambda: sel.select(task), args.repeats)
        sel.estimate = orig
        agree = "==" if ndiff == 0 and same_sel else f"{ndiff} diff" + ("" if same_sel else " Z!")
        print(f"{C:>8}{st.n_selected:>6}{st.n_images:>8}{st.fallback:>9}{fmt_ms(rm):>12}{fmt_ms(fm):>12}{fmt_ms(sm):>11}"
              f"{rm / fm:>9.0f}x{agree:>8}")
        if args.profile:
            print("    ref : " + _profile_reference(sel, task))
            print("    fast: " + _profile_fast(fe, class_emb, node64, cfg))
    print(f"peak RSS so far {rss_mb():.0f} MB")
    del sel, fe
    gc.collect()
    shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--models", type=int, nargs="+", default=[6, 50, 500])
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--metric", choices=["precision", "f1"], default="precision")
    ap.add_argument("--L", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print where the time of each path goes")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT, help="skip hubs whose index build exceeds this (s)")
    args = ap.parse_args()
    pin_threads(args.threads)
    print(thread_report())
    print(f"SYNTHETIC labels and graph (random normalised embeddings, planted hierarchy), metric={args.metric}, k_nodes=5")
    tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-sel-"))
    try:
        for n in args.nodes:
            for m in args.models:
                run_hub(tmp, n, m, args.classes, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
