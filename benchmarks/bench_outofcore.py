"""Out-of-core selection: peak memory and query time, labels in RAM vs memory-mapped blocks per model.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_outofcore.py [--nodes 20000] [--models 50 500] [--dim 384]
          [--classes 1000] [--block-models 32] [--distinct 4] [--repeats 3]
      python benchmarks/bench_outofcore.py --smoke     # seconds, tiny sizes

SYNTHETIC hub, written straight as selection blocks (no label stores): a random tree of ``--nodes`` nodes
(half leaves with two images each; an inner node owns up to 75 of its descendants' images, like the real
graph), random normalised ``--dim``-d captions, images = their leaf's caption + noise. ``--distinct`` models
are really built (``ConfuserIndex.build``, timed: the cost of adding one model); the other models are
hard-linked copies of their blocks (identical bytes, no disk), so a 500-model hub needs no 40-minute build.
Hard links share the page cache but not the mappings: every model's pages count separately in this process's
resident set, as they would with distinct files.

Each configuration runs in a fresh subprocess, so ``peak RSS`` (``ru_maxrss``: heap + touched mapped pages)
is its own:

* ``in-memory``: every model's ranking and label embeddings in RAM (``FastEq5.from_indexes``, the path
  before blocks); skipped when its labels would not fit the RAM budget (the reason is printed);
* ``blocks``: ``FastEq5.from_blocks`` over memory-mapped blocks, ``block_models`` models at a time, their
  pages released after each group.

Columns: open time, query time (median of ``--repeats`` ``FastEq5.estimate`` calls of ``--classes`` classes,
k_nodes=5), ``Eq.5 ms``: the part of it in ``FastEq5.precision_matrix`` (the per-model walk over the blocks,
``last_stats.seconds``) and that per model, peak RSS, the query's heap peak (``tracemalloc`` over the warm-up call, untimed: numpy's allocations, not
mapped pages), and
``P``: a hash of the precision matrix, which must be the same for both paths (exit status 1 otherwise).
The last line counts how many of one model's Eq. 5 decisions would change if the fallback embeddings were
stored as float16 (why blocks keep float32).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pin_threads, thread_report  # noqa: E402

RAM_BUDGET = 8e9  # bytes of labels the in-memory path may hold
TEXT_DIM = 64


def _norm(a: np.ndarray) -> np.ndarray:
    return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- the synthetic hub --------------------------------------------------------------------------------------
def make_graph(V: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, leaf of each image) of a random tree (module docstring)."""
    rng = np.random.default_rng(seed)
    n_inner = max(1, V // 2)
    parent = np.full(V, -1)
    parent[1:] = [rng.integers(0, min(v, n_inner)) for v in range(1, V)]
    leaves = np.arange(n_inner, V)
    img_leaf = np.repeat(leaves, 2)
    owned: list[list[int]] = [[] for _ in range(V)]
    for i, leaf in enumerate(img_leaf):
        owned[leaf].append(i)
    pool: list[list[int]] = [list(o) for o in owned]
    for v in range(V - 1, 0, -1):  # children have higher indices: pool descendants' images upwards
        pool[parent[v]].extend(pool[v][:150])
    for v in range(n_inner):
        imgs = pool[v]
        owned[v] = sorted(rng.choice(imgs, min(75, len(imgs)), replace=False).tolist()) if imgs else []
    indptr = np.zeros(V + 1, np.int64)
    np.cumsum([len(o) for o in owned], out=indptr[1:])
    indices = np.fromiter((i for o in owned for i in sorted(o)), np.int32, int(indptr[-1]))
    return indptr, indices, img_leaf


def build_hub(folder: Path, V: int, n_models: int, distinct: int, dim: int, L: int, seed: int = 0) -> dict:
    """Write the graph arrays and every model's block under ``folder``; returns the build figures."""
    from vlmhub.selection.fastpath import FastEq5

    folder.mkdir(parents=True, exist_ok=True)
    indptr, indices, img_leaf = make_graph(V, seed)
    np.save(folder / "indptr.npy", indptr)
    np.save(folder / "indices.npy", indices)
    rng = np.random.default_rng(seed + 1)
    np.save(folder / "node_text.npy", _norm(rng.standard_normal((V, TEXT_DIM))).astype(np.float64))
    blocks = folder / "blocks"
    build_s = []
    for m in range(min(distinct, n_models)):
        cap = _norm(rng.standard_normal((V, dim)))
        img = _norm(cap[img_leaf] + (0.6 + 0.2 * m) * rng.standard_normal((len(img_leaf), dim)) / np.sqrt(dim) * 4)
        t = time.perf_counter()
        FastEq5.build_block(blocks, f"m{m:04d}", img, cap, L)
        build_s.append(time.perf_counter() - t)
    for m in range(distinct, n_models):  # replicas: hard links to a built model's files
        src, dst = blocks / f"m{m % distinct:04d}", blocks / f"m{m:04d}"
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            os.link(f, dst / f.name)
    per_model = sum((blocks / "m0000" / f).stat().st_size for f in ("ranks.npy", "images.npy", "captions.npy"))
    return {"build_s_per_model": float(np.median(build_s)), "block_mb_per_model": per_model / 1e6,
            "images": int(len(img_leaf)), "pairs": int(indptr[-1])}


# -- one configuration, in a subprocess ----------------------------------------------------------------------
def worker(folder: Path, mode: str, n_models: int, classes: int, block_models: int, repeats: int) -> dict:
    from vlmhub.selection.blocks import open_block
    from vlmhub.selection.fastpath import ConfuserIndex, FastEq5, GraphMembership

    rss0 = _peak_rss_mb()
    indptr, indices = np.load(folder / "indptr.npy"), np.load(folder / "indices.npy")
    V, N = len(indptr) - 1, int(indices.max()) + 1 if len(indices) else 0
    mem = GraphMembership(tuple(f"i{i}" for i in range(N)), indptr, indices, tuple(f"k{v}" for v in range(V)))
    node_text = np.load(folder / "node_text.npy")
    ids = [f"m{m:04d}" for m in range(n_models)]
    t = time.perf_counter()
    blocks = [open_block(folder / "blocks", mid) for mid in ids]
    if mode == "blocks":
        fe = FastEq5.from_blocks(mem, blocks, block_models=block_models)
    else:  # everything in RAM, one private copy per model (as separate labels would be)
        embs = [(np.array(b.images), np.array(b.captions)) for b in blocks]
        idx = [ConfuserIndex(np.array(b.ranks.T), V, b.L, b.images.shape[1]) for b in blocks]
        del blocks
        fe = FastEq5.from_indexes(mem, ids, idx, [(lambda e=e: e) for e in embs], block_models=n_models)
    t_open = time.perf_counter() - t
    rng = np.random.default_rng(classes)
    class_emb = _norm(node_text[rng.choice(V, classes)] + 0.3 * rng.standard_normal((classes, TEXT_DIM)) / 8)
    times, p_times, peak_heap, est = [], [], 0, None
    for i in range(repeats + 1):  # the first call is a warm-up (page faults, first fallbacks) and traces the heap
        if not i:
            tracemalloc.start()
        t = time.perf_counter()
        est = fe.estimate(class_emb, node_text, k_nodes=5)
        dt = time.perf_counter() - t
        if not i:  # tracing slows every allocation: the timed calls run without it
            peak_heap = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        if i:
            times.append(dt)
            p_times.append(fe.last_stats.seconds)
    st = fe.last_stats
    return {"mode": mode, "open_s": t_open, "query_s": float(np.median(times)), "p_s": float(np.median(p_times)),
            "peak_rss_mb": _peak_rss_mb(), "start_rss_mb": rss0, "query_heap_mb": peak_heap / 1e6, "S": st.n_selected, "n_images": st.n_images,
            "fallback": st.fallback, "P": hashlib.sha1(np.ascontiguousarray(est["P"]).tobytes()).hexdigest()[:12]}


def run_worker(folder: Path, mode: str, n_models: int, args) -> dict:
    cmd = [sys.executable, __file__, "--_worker", str(folder), mode, str(n_models), str(args.classes[0]),
           str(args.block_models), str(args.repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    if out.returncode:
        raise SystemExit(f"bench_outofcore: worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def float16_changes(folder: Path, classes: int) -> str:
    """How many of model 0's decisions over a query's images change with float16 embeddings."""
    from vlmhub.selection.blocks import open_block
    from vlmhub.selection.fastpath import canonical_argmax, fast_transfer_matrix

    b = open_block(folder / "blocks", "m0000")
    indptr, indices = np.load(folder / "indptr.npy"), np.load(folder / "indices.npy")
    node_text = np.load(folder / "node_text.npy")
    rng = np.random.default_rng(classes)
    V = len(indptr) - 1
    class_emb = _norm(node_text[rng.choice(V, classes)] + 0.3 * rng.standard_normal((classes, TEXT_DIM)) / 8)
    sel = fast_transfer_matrix(class_emb, node_text, 5)[0]
    rows = np.unique(np.concatenate([indices[indptr[v]:indptr[v + 1]] for v in sel]))[:4000]
    img, cap = np.asarray(b.images[rows]), np.asarray(b.captions[sel])
    p32 = canonical_argmax(img, cap)
    p16 = canonical_argmax(img.astype(np.float16).astype(np.float32), cap.astype(np.float16).astype(np.float32))
    return f"float16 fallback embeddings would change {int((p32 != p16).sum())} of {len(rows)} decisions of one model"


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--_worker":
        folder, mode, n_models, classes, bm, reps = sys.argv[2:8]
        print(json.dumps(worker(Path(folder), mode, int(n_models), int(classes), int(bm), int(reps))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20000)
    ap.add_argument("--models", type=int, nargs="+", default=[50, 500])
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--classes", type=int, nargs=1, default=[1000])
    ap.add_argument("--block-models", type=int, default=32)
    ap.add_argument("--distinct", type=int, default=4, help="models really built; the rest are hard-linked copies")
    ap.add_argument("--L", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="tiny hub (300 nodes, 3 and 12 models, 16-d): seconds")
    args = ap.parse_args(argv)
    if args.smoke:
        args.nodes, args.models, args.dim, args.classes, args.block_models = 300, [3, 12], 16, [20], 4
        args.distinct, args.L, args.repeats = 2, 16, 1
    pin_threads(args.threads)
    print(thread_report())
    tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-ooc-"))
    ok = True
    try:
        folder = tmp / "hub"
        fig = build_hub(folder, args.nodes, max(args.models), args.distinct, args.dim, args.L)
        N = fig["images"]
        print(f"SYNTHETIC hub: {args.nodes} nodes, {N} images, {fig['pairs']} memberships, D={args.dim}, L={args.L}; "
              f"index build {fig['build_s_per_model']:.2f} s/model (adding a model costs this, nothing else is "
              f"rebuilt), block {fig['block_mb_per_model']:.1f} MB/model on disk")
        print(f"query: {args.classes[0]} classes, k_nodes=5; blocks: block_models={args.block_models}")
        print(f"{'models':>7} {'path':>10} {'labels GB':>10} {'open s':>8} {'query ms':>9} {'Eq.5 ms':>8} "
              f"{'us/model':>9} {'peak RSS MB':>12} "
              f"{'heap MB':>8} {'|S|':>6} {'images':>7} {'fallback':>9}  P")
        for M in args.models:
            label_bytes = M * (N + args.nodes) * args.dim * 4
            rows = []
            for mode in ("in-memory", "blocks"):
                if mode == "in-memory" and label_bytes * 1.2 > RAM_BUDGET:
                    print(f"{M:>7} {mode:>10} {label_bytes / 1e9:>10.1f}  SKIPPED: labels need "
                          f"{label_bytes / 1e9:.1f} GB of RAM > {RAM_BUDGET / 1e9:.0f} GB budget")
                    continue
                r = run_worker(folder, "blocks" if mode == "blocks" else "memory", M, args)
                rows.append(r)
                print(f"{M:>7} {mode:>10} {label_bytes / 1e9:>10.1f} {r['open_s']:>8.2f} {1e3 * r['query_s']:>9.1f} "
                      f"{1e3 * r['p_s']:>8.1f} {1e6 * r['p_s'] / M:>9.0f} "
                      f"{r['peak_rss_mb']:>12.0f} {r['query_heap_mb']:>8.1f} {r['S']:>6} {r['n_images']:>7} "
                      f"{r['fallback']:>9}  {r['P']}")
            if len({r["P"] for r in rows}) > 1:
                ok = False
                print(f"  MISMATCH: the precision matrices of the two paths differ at {M} models")
        print(f"(peak RSS includes ~{rows[-1]['start_rss_mb']:.0f} MB of interpreter + imports before the hub was opened)")
        print(float16_changes(folder, args.classes[0]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        print("FAILED: in-memory and blockwise selection disagree")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
