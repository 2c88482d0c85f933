"""The exact fast path of Eq. 5-7 (vlmhub.selection.fastpath) against an independent reference.

The reference is ``benchmarks/reference_mll.py``: Eq. 5-7 written out directly over the labels (loops over
models, nodes and images; it imports nothing from vlmhub, so it shares no code with the fast path). The
shipped ``vlmhub.selection.mll`` functions now delegate to the fast path, so they are checked against the
reference too, never against each other. A hand-worked case pins the numbers themselves.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
import mmap

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from vlmhub.selection.fastpath import (
    ConfuserIndex,
    FastEq5,
    GraphMembership,
    canonical_argmax,
    fast_transfer_matrix,
    stable_topk,
)
from vlmhub.selection.mll import node_precision, transfer_matrix

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reference_mll as ref  # noqa: E402


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


def _node_images(mem):
    return [mem.indices[mem.indptr[v]:mem.indptr[v + 1]].tolist() for v in range(mem.n_nodes)]


def _reference(mem, emb, S, metric):
    """Eq. 5 of one model by the independent reference."""
    img, cap = emb
    return ref.node_precision(img, cap, _node_images(mem), [int(v) for v in S], metric)


def _assert_same_P(got, want, metric):
    if metric == "precision":  # tp / |X_v|: the same two integers, so the same float
        assert np.array_equal(got, want)
    else:  # F1 from the same counts; the formula's evaluation order may differ in the last bit
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def _shipped_pairs(mem, S):
    pos, rows, _ = mem.pairs(S)
    U, inv = np.unique(rows, return_inverse=True)
    return U, list(zip(pos.tolist(), inv.tolist()))


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
def test_equals_independent_reference(L, kind):
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
                want = _reference(mem, embs[m], S, metric)
                _assert_same_P(P[m], want, metric)
                U, pairs = _shipped_pairs(mem, S)  # the public per-model function gives the same numbers
                _assert_same_P(node_precision(embs[m][0][U], embs[m][1][S], pairs, metric=metric), want, metric)
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
        _assert_same_P(P[m], _reference(mem, embs[m], S, metric), metric)


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


def test_transfer_matrix_and_topk_equal_the_reference():
    rng = np.random.default_rng(5)
    for C, V, k in [(7, 300, 5), (30, 100, 1), (4, 10, 20)]:
        ce, ne = _norm(rng.standard_normal((C, 6))), _norm(rng.standard_normal((V, 6)))
        ne[3] = ne[V - 1]  # tied nodes
        ce[0] = ne[3]
        for normalize in (False, True):
            want_sel, want_Z, want_sims, want_top = ref.transfer_matrix(ce, ne, k, normalize=normalize)
            sel, Z, sims, top = fast_transfer_matrix(ce, ne, k, normalize=normalize)
            assert np.array_equal(sel, want_sel) and np.array_equal(top, want_top)
            np.testing.assert_allclose(sims, want_sims, rtol=0, atol=1e-12)
            np.testing.assert_allclose(Z, want_Z, rtol=0, atol=1e-12)
            assert np.array_equal(top, np.argsort(-sims, axis=1, kind="stable")[:, :k])
            sel3, Z3, _ = transfer_matrix(ce, ne, k, normalize=normalize)  # the public function
            assert np.array_equal(sel3, want_sel) and np.allclose(Z3, want_Z, rtol=0, atol=1e-12)
    s = np.array([[0.0, 1.0, 1.0, 0.5, 1.0] * 20])
    assert np.array_equal(stable_topk(s, 4), np.argsort(-s, axis=1, kind="stable")[:, :4])


def test_hand_worked_eq5_to_7():
    """Numbers worked by hand (3 nodes in 2-d, 2 classes, 1 model); see the comments."""
    h = math.sqrt(0.5)
    node_emb = np.array([[1.0, 0.0], [0.0, 1.0], [h, h]])  # node captions at 0, 90 and 45 degrees
    class_emb = np.array([[1.0, 0.0], [0.0, 1.0]])
    # k_nodes=2: class 0 -> nodes 0 (sim 1), 2 (sim h); class 1 -> nodes 1 (1), 2 (h); V^Selected = {0, 1, 2}
    # X_0 = {image 0}, X_1 = {image 1}, X_2 = {images 0, 1, 2}
    mem = GraphMembership(("i0", "i1", "i2"), np.array([0, 1, 2, 5]), np.array([0, 1, 0, 1, 2], np.int32),
                          ("k0", "k1", "k2"))
    img = np.array([[0.9, 0.1], [0.1, 0.9], [0.7, 0.7]], np.float32)
    cap = node_emb.astype(np.float32)
    # predictions: image 0 -> node 0 (0.9 > 0.9h + 0.1h = 0.707), image 1 -> node 1, image 2 -> node 2 (0.99 > 0.7)
    fe = FastEq5.from_embeddings(mem, ["m"], [(img, cap)], L=2)
    est = fe.estimate(class_emb, node_emb, k_nodes=2, alpha=0.7, metric="precision")
    assert est["selected"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(est["Z"], [[1, 0], [0, 1], [h, h]], atol=1e-15)
    # Eq. 5: p_0 = 1/1, p_1 = 1/1, p_2 = |{image 2}| / 3 = 1/3
    np.testing.assert_allclose(est["P"], [[1, 1, 1 / 3]], atol=1e-15)
    # Eq. 6: p_y0 = 1 * 1 + (1/3) * h; p_y1 the same. Eq. 7: both classes equal, so r = p
    np.testing.assert_allclose(est["p"], [[1 + h / 3, 1 + h / 3]], atol=1e-12)
    np.testing.assert_allclose(est["r"], [[1 + h / 3, 1 + h / 3]], atol=1e-12)
    # F1 counts predictions per (node, image) pair: node 0 is predicted for (0, image 0) and (2, image 0):
    # precision 1/2, recall 1 -> F1 2/3; node 1 likewise; node 2 only for (2, image 2): precision 1,
    # recall 1/3 -> F1 1/2
    np.testing.assert_allclose(fe.precision_matrix(np.array([0, 1, 2]), "f1"), [[2 / 3, 2 / 3, 0.5]], atol=1e-12)
    # Eq. 7 with unequal classes: a second model that gets only node 0 right
    img2 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], np.float32)  # everything -> node 0
    fe2 = FastEq5.from_embeddings(mem, ["m2"], [(img2, cap)], L=2)
    e2 = fe2.estimate(class_emb, node_emb, k_nodes=2, alpha=0.7)
    # P = [1, 0, 0]; p = [1, 0]; r_y0 = 0.7 * 1 + 0.3 * (1 + 0) / 2 = 0.85; r_y1 = 0 + 0.15 = 0.15
    np.testing.assert_allclose(e2["P"], [[1, 0, 0]], atol=1e-15)
    np.testing.assert_allclose(e2["r"], [[0.85, 0.15]], atol=1e-12)
    assert ref.main(["--smoke"]) == 0  # the reference passes its own hand-worked self-check


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
    mem = fe.membership
    labels = [(store.label(m).images.get(list(mem.image_ids)), store.label(m).captions.get(list(mem.caption_keys)))
              for m in ids]
    for metric in ("precision", "f1"):
        sel = toy_hub.selector(metric=metric)
        class_emb, _ = sel.task_embeddings(task)
        cfg = sel.config
        want = ref.reference_estimate(class_emb, sel.node_emb_, _node_images(mem), labels, k_nodes=cfg.k_nodes,
                                      alpha=cfg.alpha, metric=metric, normalize_z=cfg.normalize_z)
        est = fe.estimate(class_emb, sel.node_emb_, k_nodes=cfg.k_nodes, alpha=cfg.alpha, metric=metric,
                          normalize_z=cfg.normalize_z)
        shipped = sel.estimate(task)  # what select() ranks by
        for got in (est, shipped):
            assert np.array_equal(got["selected"], want.selected)
            _assert_same_P(got["P"], want.P, metric)
            for key in ("Z", "p", "r"):
                np.testing.assert_allclose(got[key], getattr(want, key), rtol=0, atol=1e-12)
        # toy models are blind to colour pairs: exact ties between distinct nodes happen, and still agree
        assert want.P.shape == (3, len(want.selected)) and np.ptp(want.r) > 0
    again = FastEq5.from_labels(store, ids, graph, settings, L=4)  # from the cache
    assert np.array_equal(again.ranks, fe.ranks)
    stale = FastEq5.from_labels(store, ids, graph, settings, L=6)  # another L: rebuilt, not reused
    assert stale.ranks.shape[1] == min(6, len(graph.nodes))


@pytest.mark.parametrize("n_images", [1, 300, 5000])
def test_ranking_walk_equals_its_definition(n_images):
    """``FastEq5.predictions`` against the rule written per image: the first listed node that is selected,
    else (no selected node before the -1 padding) ``canonical_argmax`` over the selected captions. Rankings
    are random with random cut lengths and few selected nodes, so images are decided at position 0, during
    the one-position steps, in the doubling chunks of the stragglers, and by the fallback."""
    rng = np.random.default_rng(n_images)
    V, L, D = 400, 48, 8
    N = n_images + 7
    ranks = np.full((N, L), -1, np.int16)
    for x in range(N):
        cut = int(rng.integers(0, L + 1))
        ranks[x, :cut] = rng.permutation(V)[:cut]
        ranks[x, cut:] = -1
    img, cap = _norm(rng.standard_normal((N, D))), _norm(rng.standard_normal((V, D)))
    mem = GraphMembership(tuple(f"i{i}" for i in range(N)), np.zeros(V + 1, np.int64), np.zeros(0, np.int32),
                          tuple(f"k{v}" for v in range(V)))
    fe = FastEq5(mem, ("m",), (np.ascontiguousarray(ranks.T),), ((lambda: (img, cap)),))
    sel = np.sort(rng.choice(V, 12, replace=False))
    rows = np.sort(rng.choice(N, n_images, replace=False))
    pred, n_fb = fe.predictions(sel, rows)
    pos_of = {int(s): i for i, s in enumerate(sel)}
    want, fb = [], 0
    for x in rows:
        hit = next((pos_of[int(v)] for v in ranks[x] if v >= 0 and int(v) in pos_of), None)
        if hit is None:
            fb += 1
            hit = int(canonical_argmax(img[x : x + 1], cap[sel])[0])
        want.append(hit)
    assert pred.tolist() == [want] and n_fb == fb
    depth = [next((j for j, v in enumerate(ranks[x]) if int(v) in pos_of), -1) for x in rows]
    if n_images == 5000:  # every part of the walk ran
        assert 0 < fb < n_images and 0 in depth and max(depth) > 8 + 16


def test_float32_screen_of_canonical_argmax_changes_no_decision(monkeypatch):
    """``canonical_argmax`` screens in float32 and settles only near-ties in float64/fsum: its decisions
    equal the float64-only rule and a brute-force exact argmax (math.fsum of every caption, lowest row among
    exact ties) on near-ties built to be closer than float32 can tell apart, duplicates and zero rows."""
    from vlmhub.selection import exact
    from vlmhub.selection.exact import _canonical_argmax64

    settled = []  # rows the float32 screen passed on to float64
    monkeypatch.setattr(exact, "_canonical_argmax64", lambda X, C: settled.append(len(X)) or _canonical_argmax64(X, C))
    rng = np.random.default_rng(7)
    D, S = 48, 60
    C = _norm(rng.standard_normal((S, D)))
    C[10] = C[3]  # an exact duplicate caption: ties go to row 3
    C[20] = np.nextafter(C[5], np.float32(2))  # 1-ulp neighbours
    C[21, :] = C[5]
    C[21, 0] = np.nextafter(C[5, 0], np.float32(-2))
    X = _norm(rng.standard_normal((400, D)))
    X[:100] = _norm(C[rng.integers(0, S, 100)] + 1e-7 * rng.standard_normal((100, D)))  # near their caption
    X[100:140] = C[[3, 5, 20, 21] * 10]  # exactly a caption (and its near twins)
    X[140:150] = 0.0  # every similarity is exactly 0: row 0
    X[150:160, D // 2 :] = 0.0
    C2 = C.copy()
    C2[:, : D // 2][::2] = 0.0  # sparse captions: exact zero similarities with the half-zero images
    for caps in (C, C2):
        got = canonical_argmax(X, caps)
        assert np.array_equal(got, _canonical_argmax64(X, caps))
        exact_sims = np.array([[math.fsum((x.astype(np.float64) * c.astype(np.float64)).tolist()) for c in caps] for x in X])
        assert np.array_equal(got, np.argmax(exact_sims, axis=1))  # np.argmax: first (= lowest row) of the maxima
    assert len(settled) == 2 and all(0 < k < len(X) for k in settled), settled  # both stages decided rows
