"""The exact fast path of Eq. 5 (vlmhub.selection.fastpath) against the reference, on random and real labels."""

from __future__ import annotations

import mmap

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from vlmhub.selection.fastpath import (
    ConfuserIndex,
    FastEq5,
    GraphMembership,
    canonical_argmax,
    exact_node_precision,
    fast_transfer_matrix,
    stable_topk,
)
from vlmhub.selection.mll import node_precision, transfer_matrix


def _norm(a):
    return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _membership(rng, V, N, shared=True):
    """Random X_v; with ``shared``, node v's parent (v // 3) also owns v's images (leaf + ancestors)."""
    sets = [set(rng.choice(N, int(rng.integers(0, min(5, N + 1))), replace=False).tolist()) for _ in range(V)]
    if shared:
        for v in range(V - 1, 0, -1):
            sets[v // 3] |= sets[v]
    indptr, ind = [0], []
    for s in sets:
        ind += sorted(s)
        indptr.append(len(ind))
    return GraphMembership(tuple(f"i{i}" for i in range(N)), np.asarray(indptr, np.int64), np.asarray(ind, np.int32),
                           tuple(f"k{v}" for v in range(V)))


def _reference(mem, emb, S, metric, fn):
    pos, rows, _ = mem.pairs(S)
    U, inv = np.unique(rows, return_inverse=True)
    pairs = list(zip(pos.tolist(), inv.tolist()))
    img, cap = emb
    return fn(img[U], cap[S], pairs, metric=metric)


def _random_hub(rng, V, N, D, M, dup=0, zeros=False):
    embs = []
    for _ in range(M):
        img, cap = _norm(rng.standard_normal((N, D))), _norm(rng.standard_normal((V, D)))
        if zeros:  # sparse non-negative embeddings: many exact zero similarities (label-space models)
            img = _norm(np.where(rng.random((N, D)) < 0.15, rng.random((N, D)), 0))
            cap = _norm(np.where(rng.random((V, D)) < 0.15, rng.random((V, D)), 0))
        for _ in range(dup if V > 1 else 0):  # nodes with identical captions: exact ties
            a, b = rng.choice(V, 2, replace=False)
            cap[b] = cap[a]
        embs.append((img, cap))
    return embs


@pytest.mark.parametrize("L", [3, 64])
@pytest.mark.parametrize("kind", ["dense", "dup", "sparse"])
def test_equals_canonical_reference_bit_for_bit(L, kind):
    rng = np.random.default_rng(hash((L, kind)) % 2**32)
    V, N, D, M = 120, 90, 12, 3
    mem = _membership(rng, V, N)
    embs = _random_hub(rng, V, N, D, M, dup=15 if kind == "dup" else 0, zeros=kind == "sparse")
    fe = FastEq5.from_embeddings(mem, [f"m{i}" for i in range(M)], embs, L=L)
    fallbacks = 0
    for _ in range(40):
        S = np.unique(rng.choice(V, int(rng.integers(1, 50))))
        for metric in ("precision", "f1"):
            P = fe.precision_matrix(S, metric)
            fallbacks += fe.last_stats.fallback
            for m in range(M):
                ref = _reference(mem, embs[m], S, metric, exact_node_precision)
                assert np.array_equal(P[m], ref), (kind, L, metric, m, S)
                if kind == "dense":  # no float32 near-ties: the shipped float32 reference agrees too
                    assert np.array_equal(P[m], _reference(mem, embs[m], S, metric, node_precision))
    if L == 3:
        assert fallbacks > 0  # truncated lists exercised the exact fallback


@hsettings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.sampled_from(["precision", "f1"]))
def test_hypothesis_random_cases(seed, L, metric):
    rng = np.random.default_rng(seed)
    V, N, D = int(rng.integers(2, 40)), int(rng.integers(1, 30)), int(rng.integers(2, 6))
    mem = _membership(rng, V, N, shared=bool(rng.integers(0, 2)))
    embs = _random_hub(rng, V, N, D, 2, dup=int(rng.integers(0, 4)), zeros=bool(rng.integers(0, 2)))
    # quantised embeddings make exact ties between distinct vectors common
    embs = [(_norm(np.round(i * 2) / 2 + 1e-3 * (np.abs(i) < 1e-9)), _norm(np.round(c * 2) / 2)) for i, c in embs]
    fe = FastEq5.from_embeddings(mem, ["a", "b"], embs, L=L)
    S = np.unique(rng.choice(V, int(rng.integers(1, V + 1))))
    P = fe.precision_matrix(S, metric)
    for m in range(2):
        assert np.array_equal(P[m], _reference(mem, embs[m], S, metric, exact_node_precision))


def test_ties_go_to_the_lowest_node_and_index_is_a_canonical_prefix():
    cap = _norm(np.array([[1, 0], [0, 1], [1, 0], [1, 1], [0, 1]], np.float32))
    img = _norm(np.array([[1, 0], [0, 1], [1, 1], [-1, -1]], np.float32))
    assert canonical_argmax(img, cap).tolist() == [0, 1, 3, 0]
    assert canonical_argmax(img, cap[[2, 4, 3]]).tolist() == [0, 1, 2, 0]
    ix = ConfuserIndex.build(img, cap, L=5)
    assert ix.ranks[0, :2].tolist() == [0, 2]  # duplicates tie exactly, lower node first
    assert ix.ranks[1, :2].tolist() == [1, 4]
    assert ix.ranks.dtype == np.int16


def test_save_load_round_trip_and_memory(tmp_path):
    rng = np.random.default_rng(3)
    img, cap = _norm(rng.standard_normal((50, 8))), _norm(rng.standard_normal((70, 8)))
    ix = ConfuserIndex.build(img, cap, L=16, graph_version="g1", fingerprint="fp")
    path = ix.save(tmp_path / "m.npz")
    back = ConfuserIndex.load(path)
    assert np.array_equal(back.ranks, ix.ranks) and back.ranks.dtype == ix.ranks.dtype
    assert (back.n_nodes, back.L, back.dim, back.graph_version, back.fingerprint) == (70, 16, 8, "g1", "fp")
    assert ix.nbytes == 50 * 16 * 2
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ValueError):
        ConfuserIndex.load(tmp_path / "bad.npz")


def test_transfer_matrix_and_topk_identical():
    rng = np.random.default_rng(5)
    for C, V, k in [(7, 300, 5), (30, 100, 1), (4, 10, 20)]:
        ce, ne = _norm(rng.standard_normal((C, 6))), _norm(rng.standard_normal((V, 6)))
        ne[3] = ne[V - 1]  # tied nodes
        ce[0] = ne[3]
        for normalize in (False, True):
            sel, Z, sims = transfer_matrix(ce, ne, k, normalize=normalize)
            sel2, Z2, sims2, top = fast_transfer_matrix(ce, ne, k, normalize=normalize)
            assert np.array_equal(sel, sel2) and np.array_equal(Z, Z2) and np.array_equal(sims, sims2)
            assert np.array_equal(top, np.argsort(-sims, axis=1, kind="stable")[:, :k])
    s = np.array([[0.0, 1.0, 1.0, 0.5, 1.0] * 20])
    assert np.array_equal(stable_topk(s, 4), np.argsort(-s, axis=1, kind="stable")[:, :4])


def test_toy_hub_matches_reference_and_caches(toy_hub, color_data):
    from vlmhub.concepts.graph import current_graph
    from vlmhub.labeling.labels import LabelStore
    from vlmhub.tasks import load_task

    settings = toy_hub.settings
    graph = current_graph(settings)
    store = LabelStore(settings)
    ids = ["toy-a", "toy-b", "toy-c"]
    fe = FastEq5.from_labels(store, ids, graph, settings, L=4)
    cache = settings.cache_dir / "fastpath" / graph.version
    assert sorted(p.parent.name for p in cache.glob("*/block.json")) == ids  # one block per model
    assert fe.n_built == 3 and all(isinstance(b.base, mmap.mmap) and not b.flags.writeable for b in fe.blocks)
    task = load_task(color_data["task"])
    for metric in ("precision", "f1"):
        sel = toy_hub.selector(metric=metric)
        ref = sel.estimate(task)
        class_emb, _ = sel.task_embeddings(task)
        est = fe.estimate(class_emb, sel.node_emb_, k_nodes=sel.config.k_nodes, alpha=sel.config.alpha, metric=metric)
        assert np.array_equal(est["selected"], ref["selected"]) and np.array_equal(est["Z"], ref["Z"])
        mem = fe.membership
        for m, mid in enumerate(ids):
            img, cap = store.label(mid).images.get(list(mem.image_ids)), store.label(mid).captions.get(list(mem.caption_keys))
            assert np.array_equal(est["P"][m], _reference(mem, (img, cap), est["selected"], metric, exact_node_precision))
            # the shipped float32 path may differ only where its own argmax is a float32 near-tie (toy models
            # have blind spots: identical embeddings, so exact ties that float32 sgemm breaks arbitrarily)
            pos, rows, _ = mem.pairs(est["selected"])
            U = np.unique(rows)
            s32 = img[U] @ cap[est["selected"]].T
            p32, pc = np.argmax(s32, axis=1), canonical_argmax(img[U], cap[est["selected"]])
            diff = np.flatnonzero(p32 != pc)
            r = np.arange(len(U))[diff]
            assert np.all(np.abs(s32[r, p32[diff]] - s32[r, pc[diff]]) <= 1e-6)
            if len(diff) == 0:
                assert np.array_equal(est["P"][m], ref["P"][m])
    again = FastEq5.from_labels(store, ids, graph, settings, L=4)  # from the cache
    assert np.array_equal(again.ranks, fe.ranks)
    stale = FastEq5.from_labels(store, ids, graph, settings, L=6)  # another L: rebuilt, not reused
    assert stale.ranks.shape[1] == min(6, len(graph.nodes))
