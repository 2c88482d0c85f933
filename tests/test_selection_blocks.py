"""Out-of-core selection (vlmhub.selection.blocks): memory-mapped per-model blocks give the in-memory answers.

Checked against the in-memory fast path (bit for bit, every ``block_models``) and against the independent
reference of Eq. 5-7 (``benchmarks/reference_mll.py``, which imports nothing from vlmhub), on random labels
with exact ties (duplicate captions, sparse embeddings with zero similarities, quantised vectors).
"""

from __future__ import annotations

import importlib.util
import mmap
from pathlib import Path

import numpy as np
import pytest

from vlmhub.errors import VlmhubError
from vlmhub.selection.blocks import BlockError, ModelBlock, open_block, open_or_none, write_block
from vlmhub.selection.fastpath import ConfuserIndex, FastEq5, GraphMembership


def _reference_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_mll.py"
    spec = importlib.util.spec_from_file_location("reference_mll", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _norm(a):
    return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _hub(rng, V, N, D, M, kind):
    """Membership (leaf images shared with ancestors) and M models' (images, captions) with ties of ``kind``."""
    sets = [set(rng.choice(N, int(rng.integers(0, min(4, N + 1))), replace=False).tolist()) for _ in range(V)]
    for v in range(V - 1, 0, -1):
        sets[v // 3] |= sets[v]
    indptr, ind = [0], []
    for s in sets:
        ind += sorted(s)
        indptr.append(len(ind))
    mem = GraphMembership(tuple(f"i{i}" for i in range(N)), np.asarray(indptr, np.int64), np.asarray(ind, np.int32),
                          tuple(f"k{v}" for v in range(V)))
    embs = []
    for _ in range(M):
        img, cap = rng.standard_normal((N, D)), rng.standard_normal((V, D))
        if kind == "sparse":  # many exact zero similarities
            img = np.where(rng.random((N, D)) < 0.2, rng.random((N, D)), 0) + 1e-3 * (rng.random((N, D)) < 0.01)
            cap = np.where(rng.random((V, D)) < 0.2, rng.random((V, D)), 0)
        if kind == "quantised":  # exact ties between distinct vectors
            img, cap = np.round(img * 2) / 2 + 1e-3, np.round(cap * 2) / 2
        img, cap = _norm(img), _norm(cap)
        if kind == "dup":  # nodes with identical captions tie exactly
            for _ in range(V // 6):
                a, b = rng.choice(V, 2, replace=False)
                cap[b] = cap[a]
        embs.append((img, cap))
    return mem, embs


def _blockwise(tmp_path, mem, embs, L, block_models):
    blocks = [FastEq5.build_block(tmp_path, f"m{i}", img, cap, L) for i, (img, cap) in enumerate(embs)]
    return FastEq5.from_blocks(mem, blocks, block_models=block_models)


@pytest.mark.parametrize("kind", ["dense", "dup", "sparse", "quantised"])
def test_blockwise_equals_in_memory_bit_for_bit(tmp_path, kind):
    rng = np.random.default_rng(["dense", "dup", "sparse", "quantised"].index(kind))
    V, N, D, M, L = 150, 120, 10, 5, 6
    mem, embs = _hub(rng, V, N, D, M, kind)
    ids = [f"m{i}" for i in range(M)]
    ram = FastEq5.from_embeddings(mem, ids, embs, L=L, block_models=M)
    disk = [_blockwise(tmp_path / f"b{bm}", mem, embs, L, bm) for bm in (1, 2, M)]
    assert all(isinstance(b.base, mmap.mmap) for fe in disk for b in fe.blocks)
    fallbacks = 0
    for _ in range(25):
        S = np.unique(rng.choice(V, int(rng.integers(1, 60))))
        for metric in ("precision", "f1"):
            want = ram.precision_matrix(S, metric)
            fallbacks += ram.last_stats.fallback
            for fe in disk:
                got = fe.precision_matrix(S, metric)
                assert got.dtype == want.dtype and np.array_equal(got, want), (kind, metric, fe.block_models)
                assert fe.last_stats.fallback == ram.last_stats.fallback
    assert fallbacks > 0  # L = 6 cuts rankings: the exact fallback over memory-mapped embeddings ran


@pytest.mark.parametrize("metric", ["precision", "f1"])
@pytest.mark.parametrize("kind", ["dup", "sparse"])
def test_blockwise_estimate_equals_independent_reference(tmp_path, metric, kind):
    ref_mll = _reference_module()
    rng = np.random.default_rng(7 + (metric == "f1") + 2 * (kind == "sparse"))
    V, N, D, M, C = 90, 70, 8, 4, 12
    mem, embs = _hub(rng, V, N, D, M, kind)
    node_emb = _norm(rng.standard_normal((V, 16))).astype(np.float64)
    class_emb = node_emb[rng.choice(V, C)] + 0.1 * rng.standard_normal((C, 16))
    node_emb[5] = node_emb[4]  # a tie between two nodes in caption matching: lower index first
    fe = _blockwise(tmp_path, mem, embs, 5, block_models=3)
    got = fe.estimate(class_emb, node_emb, k_nodes=4, alpha=0.7, metric=metric)
    node_images = [mem.indices[mem.indptr[v]:mem.indptr[v + 1]].tolist() for v in range(V)]
    ref = ref_mll.reference_estimate(class_emb, node_emb, node_images, embs, k_nodes=4, alpha=0.7, metric=metric)
    assert np.array_equal(got["selected"], ref.selected) and np.array_equal(got["top"], ref.top)
    assert np.array_equal(got["P"], ref.P)  # Eq. 5: the same counts, the same division: bit for bit
    # text similarities (one matrix product vs a product per class) and Eq. 6-7 (matrix products vs loops)
    # round in another order: at most a few ulp apart, never a different model ranking
    for key in ("Z", "p", "r"):
        a, b = got[key], getattr(ref, key)
        assert np.all(np.abs(a - b) <= 8 * np.spacing(np.maximum(np.abs(a), np.abs(b)))), key
    assert np.array_equal(np.argsort(-got["r"], axis=0, kind="stable"), np.argsort(-ref.r, axis=0, kind="stable"))


def test_release_keeps_results_and_blocks_valid(tmp_path):
    rng = np.random.default_rng(3)
    mem, embs = _hub(rng, 60, 50, 6, 3, "dense")
    fe = _blockwise(tmp_path, mem, embs, 3, block_models=1)
    S = np.unique(rng.choice(60, 20))
    first = fe.precision_matrix(S)
    blocks = [open_block(tmp_path, f"m{i}") for i in range(3)]
    for b in blocks:
        b.release()
    assert np.array_equal(fe.precision_matrix(S), first)  # re-faulted from the files after the release
    assert np.array_equal(np.asarray(blocks[0].images), embs[0][0])
    ModelBlock("ram", np.zeros((1, 1), np.int16), np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32)).release()


def test_block_files_are_checked(tmp_path):
    rng = np.random.default_rng(4)
    img, cap = _norm(rng.standard_normal((20, 4))), _norm(rng.standard_normal((30, 4)))
    ix = ConfuserIndex.build(img, cap, 5)
    b = write_block(tmp_path, "m", ix.ranks.T, img, cap, graph_version="g1", fingerprint="f1")
    assert b.ranks.dtype == np.int16 and b.ranks.shape == (5, 20) and not b.ranks.flags.writeable
    assert np.array_equal(b.ranks, ix.ranks.T) and np.array_equal(b.captions, cap)
    assert open_block(tmp_path, "m", fingerprint="f2") is None  # relabeled: stale, rebuilt by the caller
    assert open_block(tmp_path, "m", graph_version="g2") is None
    assert open_block(tmp_path, "m", L=6) is None and open_block(tmp_path, "m", L=5) is not None
    assert open_block(tmp_path, "absent") is None
    with pytest.raises(TypeError):
        write_block(tmp_path, "bad", ix.ranks.T.astype(np.float32), img, cap)
    path = tmp_path / "m" / "images.npy"
    path.write_bytes(path.read_bytes()[:-7])  # truncated
    with pytest.raises(BlockError, match="images.npy") as err:
        open_block(tmp_path, "m")
    assert isinstance(err.value, VlmhubError) and isinstance(err.value, ValueError)
    assert open_or_none(tmp_path, "m") is None  # logged, treated as absent
    np.save(tmp_path / "m" / "images.npy", np.zeros((20, 4), np.float64))  # another dtype than block.json says
    with pytest.raises(BlockError, match="float64"):
        open_block(tmp_path, "m")


def test_adding_a_model_builds_only_its_block(toy_hub):
    from vlmhub.concepts.graph import current_graph
    from vlmhub.labeling.labels import LabelStore

    settings = toy_hub.settings
    graph, store = current_graph(settings), LabelStore(settings)
    two = FastEq5.from_labels(store, ["toy-a", "toy-b"], graph, settings, L=4)
    assert two.n_built == 2
    folder = settings.cache_dir / "fastpath" / graph.version
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    three = FastEq5.from_labels(store, ["toy-a", "toy-b", "toy-c"], graph, settings, L=4, block_models=2)
    assert three.n_built == 1  # one model's build, not a rebuild
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the other blocks were not touched
    S = np.arange(0, len(graph.nodes), 2)
    assert np.array_equal(three.precision_matrix(S)[:2], two.precision_matrix(S))
    ram = FastEq5.from_labels(store, ["toy-a", "toy-b", "toy-c"], graph, settings, L=4, cache=False)
    assert np.array_equal(three.precision_matrix(S, "f1"), ram.precision_matrix(S, "f1"))
