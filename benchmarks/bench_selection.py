"""Selection latency: an independent reference of Eq. 5-7 vs the fast path (``vlmhub.selection.fastpath``).

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_selection.py [--nodes 2000 10000] [--models 6 50 500]
          [--classes 10 100 1000] [--metric precision] [--L 64] [--repeats 5] [--profile]
      python benchmarks/bench_selection.py --smoke      # seconds, tiny sizes (the test suite runs this)

SYNTHETIC hubs (see ``_common.make_synthetic_hub``): random normalised 384-d embeddings with planted
hierarchical structure, written as real label stores and a real graph in a temporary hub. For every hub
(nodes x models) it prints the fast-path index build time (first ``from_labels``: compute + cache write),
the cached load time, index bytes per model, then per class count the latency of

* ``ref ms``     ``reference_mll.reference_estimate``: Eq. 5-7 written out directly over the labels (loops over
                  models, nodes and their images; imports nothing from vlmhub), on the label embeddings read
                  into memory once (their read time is printed per hub, not counted here);
* ``fast ms``    ``FastEq5.estimate`` (same selected nodes, Z, P, p, r);
* ``select ms``  the shipped ``MLLSelector.select`` (fast path inside, plus the per-class ranking and tuples),
                  on the planted text embeddings (text encoding is not timed);

then ``ref/fast`` and ``check``: ``==`` when the selected nodes and P are identical and Z, p, r agree to
1e-12 (else what differs). One line per hub times query-time overrides of ``select``: ``k`` (no refit) and
``alpha`` (refits while the API has no query-time alpha: issue 11 item 2). Hubs over ~8 GB of RAM or ~2 minutes
of index build are skipped with the reason. It exits non-zero if the reference and the fast path disagree.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ms, make_synthetic_hub, pin_threads, rss_mb, thread_report, timeit  # noqa: E402
from reference_mll import class_estimates, node_precision, reference_estimate, reuse_scores, transfer_matrix  # noqa: E402

DIM = 384
RAM_LIMIT = 8e9
TIME_LIMIT = 120.0


def _plant(sel, node_emb: np.ndarray, class_emb: np.ndarray, task):
    """Make ``sel`` use the planted text-side embeddings (node captions, class captions) and prove it did."""
    sel.node_emb_ = node_emb
    sel.node_emb64_ = np.asarray(node_emb, np.float64)  # what the fast path inside estimate() reads
    sel.task_embeddings = lambda _task, e=class_emb: (e, [[] for _ in range(len(e))])
    sims = sel.estimate(task)["sims"]
    want = np.asarray(class_emb, np.float64) @ np.asarray(node_emb, np.float64).T
    if sims.shape != want.shape or not np.allclose(sims, want, atol=1e-9):
        raise SystemExit("bench_selection: MLLSelector did not use the planted embeddings (its attributes changed); "
                         "update _plant() in benchmarks/bench_selection.py")
    return sel


def _compare(ref, fast) -> tuple[bool, str]:
    """(agree, what differs) between a ReferenceEstimate and FastEq5.estimate's dict."""
    if not np.array_equal(ref.selected, fast["selected"]):
        return False, "selected nodes differ"
    bad = []
    if not np.array_equal(ref.top, fast["top"]):
        bad.append("top nodes")
    n_p = int((ref.P != fast["P"]).sum())
    if n_p:
        bad.append(f"P {n_p} entries")
    for key in ("Z", "p", "r"):
        err = float(np.max(np.abs(getattr(ref, key) - fast[key]), initial=0.0))
        if err > 1e-12:
            bad.append(f"{key} max|diff| {err:.1e}")
    order_ref = np.argsort(-ref.r, axis=0, kind="stable")
    order_fast = np.argsort(-fast["r"], axis=0, kind="stable")
    if not np.array_equal(order_ref, order_fast):
        bad.append("model ranking")
    return not bad, "==" if not bad else ", ".join(bad)


def _profile_reference(class_emb, node_emb, node_images, models, cfg) -> str:
    out = {}
    t = time.perf_counter()
    selected, Z, _, _ = transfer_matrix(class_emb, node_emb, cfg.k_nodes, normalize=cfg.normalize_z)
    out["transfer matrix"] = time.perf_counter() - t
    t = time.perf_counter()
    P = np.stack([node_precision(i, c, node_images, selected.tolist(), cfg.metric) for i, c in models])
    out["Eq.5 (matmul + exact ties + counting loops)"] = time.perf_counter() - t
    t = time.perf_counter()
    reuse_scores(class_estimates(P, Z), cfg.alpha)
    out["Eq.6-7"] = time.perf_counter() - t
    tot = sum(out.values())
    return ", ".join(f"{k} {1e3 * v:.1f} ms ({100 * v / tot:.0f}%)" for k, v in out.items())


def _profile_fast(fe, class_emb, node64, cfg) -> str:
    from vlmhub.selection.fastpath import fast_transfer_matrix
    from vlmhub.selection.mll import class_estimates as fast_class_estimates
    from vlmhub.selection.mll import reuse_scores as fast_reuse_scores

    out = {}
    t = time.perf_counter()
    selected, Z, _, _ = fast_transfer_matrix(class_emb, node64, cfg.k_nodes, normalize=cfg.normalize_z)
    out["transfer"] = time.perf_counter() - t
    t = time.perf_counter()
    _, rows, _ = fe.membership.pairs(selected)
    U = np.unique(rows)
    out["pairs+union"] = time.perf_counter() - t
    t = time.perf_counter()
    fe.predictions(selected, U)
    out["predictions (rank lookups+fallback)"] = time.perf_counter() - t
    t = time.perf_counter()
    P = fe.precision_matrix(selected, cfg.metric)
    out["precision_matrix total"] = time.perf_counter() - t
    t = time.perf_counter()
    fast_reuse_scores(fast_class_estimates(P, Z), cfg.alpha)
    out["Eq.6-7"] = time.perf_counter() - t
    st = fe.last_stats
    return ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in out.items()) + (
        f"; |S|={st.n_selected} images={st.n_images} pairs={st.n_pairs} fallback={st.fallback}")


def _override_line(sel, task, hub, cfg, class_emb, repeats: int) -> str:
    """Cost of a default select, a select with k overridden, and one with alpha overridden."""
    from vlmhub.selection.mll import MLLSelector

    _, t_default, _ = timeit(lambda: sel.select(task), repeats)
    _, t_k, _ = timeit(lambda: sel.select(task, k=1), repeats)
    if "alpha" in inspect.signature(sel.select).parameters:
        _, t_a, _ = timeit(lambda: sel.select(task, alpha=0.5), repeats)
        how = "query-time, no refit"
    else:  # the only way to another alpha today: a new selector, fitted again
        def refit():
            s = MLLSelector(hub.settings, replace(cfg, alpha=0.5)).fit(hub.model_ids, hub.graph)
            return _plant(s, hub.node_emb, class_emb, task).select(task)

        _, t_a, _ = timeit(refit, 1, warmup=0)
        how = "REFITS: MLLSelector.select takes no alpha, a new selector is fitted (issue 11 item 2)"
    return (f"query-time overrides ({len(task.classes)} classes): select default {fmt_ms(t_default)} ms | "
            f"k=1 {fmt_ms(t_k)} ms ({t_k / t_default:.2f}x, no refit) | alpha=0.5 {fmt_ms(t_a)} ms "
            f"({t_a / t_default:.1f}x, {how}); the weighting is a reuse option (MLLEnsemble), selection never sees it")


def run_hub(tmp: Path, n_nodes: int, n_models: int, classes: list[int], args) -> bool:
    """Benchmark one synthetic hub; False if the reference and the fast path disagreed anywhere."""
    from vlmhub.labeling.labels import LabelStore, caption_key
    from vlmhub.selection.fastpath import ConfuserIndex, FastEq5, GraphMembership
    from vlmhub.selection.mll import MLLConfig, MLLSelector
    from vlmhub.tasks import Task

    n_images = n_nodes  # half the nodes are leaves with 2 images each
    label_bytes = n_models * (n_images + n_nodes) * DIM * 4
    # the reference keeps every label in RAM; generation holds one model at a time
    if label_bytes * 1.3 > RAM_LIMIT:
        print(f"\n## {n_nodes} nodes x {n_models} models: SKIPPED (labels {label_bytes / 1e9:.1f} GB in RAM > ~8 GB budget)")
        return True
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
        return True
    t = time.perf_counter()
    fe = FastEq5.from_labels(store, hub.model_ids, g, hub.settings, L=args.L, membership=mem)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    fe = FastEq5.from_labels(store, hub.model_ids, g, hub.settings, L=args.L, membership=mem)
    t_load = time.perf_counter() - t
    print(f"FastEq5.from_labels: build+cache {t_build:.1f} s, cached load {t_load:.2f} s, "
          f"index RAM {fe.nbytes / 1e6:.1f} MB ({fe.bytes_per_model() / 1e3:.0f} kB/model)")
    # the reference reads the labels as they are stored: per model, every image and every node caption
    t = time.perf_counter()
    image_ids = g.image_ids()
    row = {x: i for i, x in enumerate(image_ids)}
    node_images = [[row[x] for x in n.images] for n in g.nodes]
    keys = [caption_key(n.caption) for n in g.nodes]
    models = [(store.label(m).images.get(image_ids), store.label(m).captions.get(keys)) for m in hub.model_ids]
    print(f"reference: label embeddings read into RAM in {time.perf_counter() - t:.1f} s")

    cfg = MLLConfig(metric=args.metric, text_embedder="hashing", k_nodes=5, fast_L=args.L)
    sel = MLLSelector(hub.settings, cfg).fit(hub.model_ids, g)
    node64 = np.asarray(hub.node_emb, np.float64)
    print(f"{'classes':>8}{'|S|':>6}{'images':>8}{'fallback':>9}{'ref ms':>11}{'fast ms':>10}{'select ms':>11}"
          f"{'ref/fast':>10}  check")
    ok = True
    task = class_emb = None
    for C in classes:
        class_emb = hub.class_embeddings(C, seed=C)
        task = Task(f"synthetic-{C}", tuple(f"class {i}" for i in range(C)))
        fast = lambda: fe.estimate(class_emb, node64, k_nodes=cfg.k_nodes, alpha=cfg.alpha, metric=cfg.metric)
        _, fm, fres = timeit(fast, args.repeats)
        st = fe.last_stats
        reference = lambda: reference_estimate(class_emb, hub.node_emb, node_images, models, k_nodes=cfg.k_nodes,
                                               alpha=cfg.alpha, metric=cfg.metric, normalize_z=cfg.normalize_z)
        t = time.perf_counter()
        ref = reference()  # one call first: repeat only if that is cheap
        t1 = time.perf_counter() - t
        reps = args.repeats if t1 * args.repeats < 30 else 1
        _, rm, ref = timeit(reference, reps, warmup=0) if reps > 1 else (t1, t1, ref)
        agree, check = _compare(ref, fres)
        ok &= agree
        _plant(sel, hub.node_emb, class_emb, task)
        _, sm, _ = timeit(lambda: sel.select(task), args.repeats)
        print(f"{C:>8}{st.n_selected:>6}{st.n_images:>8}{st.fallback:>9}{fmt_ms(rm):>11}{fmt_ms(fm):>10}{fmt_ms(sm):>11}"
              f"{rm / fm:>9.1f}x  {check}")
        if args.profile:
            print("    ref : " + _profile_reference(class_emb, hub.node_emb, node_images, models, cfg))
            print("    fast: " + _profile_fast(fe, class_emb, node64, cfg))
    if task is not None:
        print(_override_line(sel, task, hub, cfg, class_emb, args.repeats))
    print(f"peak RSS so far {rss_mb():.0f} MB")
    del sel, fe, models
    gc.collect()
    shutil.rmtree(home, ignore_errors=True)
    return ok


def main(argv=None) -> int:
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
    ap.add_argument("--smoke", action="store_true", help="tiny hub (120 nodes, 3 models, 4 and 12 classes), both metrics")
    args = ap.parse_args(argv)
    metrics = [args.metric]
    if args.smoke:
        args.nodes, args.models, args.classes, args.repeats, args.L = [120], [3], [4, 12], 1, 8
        metrics = ["precision", "f1"]
    pin_threads(args.threads)
    print(thread_report())
    tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-sel-"))
    ok = True
    try:
        for metric in metrics:
            args.metric = metric
            print(f"SYNTHETIC labels and graph (random normalised embeddings, planted hierarchy), metric={metric}, k_nodes=5")
            for n in args.nodes:
                for m in args.models:
                    ok &= run_hub(tmp, n, m, args.classes, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        print("FAILED: the fast path and the independent reference disagree (see the check column)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
