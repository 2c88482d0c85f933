"""An independent reference implementation of MLL selection (Eq. 5-7), written for reading, not for speed.

It imports nothing from vlmhub: only numpy, math and the standard library. ``bench_selection.py`` times it
beside the fast path (``vlmhub.selection.fastpath.FastEq5``) and checks that both give the same numbers; the
tests (``tests/test_fastpath.py``) check the fast path against it on random and hand-made labels.

The conventions are vlmhub's (paper Section 4.3, Eq. 5-7; docs/mll.md):

* **Caption matching.** ``class_emb`` (C x d) and ``node_emb`` (V x d) are normalised text embeddings of the
  class captions and of the graph nodes' captions. The similarity of class y and node v is their dot product
  (float64). Each class keeps its ``k_nodes`` most similar nodes; ties go to the lower node index.
* **Transfer matrix Z** (Eq. 6's ``z_vy``). ``V^Selected`` is the sorted union of every class's top nodes.
  ``z_vy`` is the similarity of v and y if v is one of y's top nodes, else 0. With ``normalize_z`` (an
  option, not the paper) negative entries are clipped to 0 and each class's column is divided by its sum.
* **Eq. 5.** For model m and selected node v, ``p_{m,v} = |{x in X_v : argmax_{u in V^Selected} s_m(x, u) = v}|
  / |X_v|``, where ``s_m(x, u)`` is the dot product of m's embedding of image x and of u's caption (label
  embeddings are float32). The argmax is *canonical*: the similarity is the correctly rounded exact dot
  product of the float32 vectors (:func:`math.fsum` of the exact float64 products) and ties go to the
  lowest node index. A node without images scores 0. ``metric="f1"`` (the official code) is the F1 of
  that recall and the precision ``tp_v / |{(u, x) : x in X_u, u in V^Selected, pred(x) = v}|`` (predictions
  counted per (node, image) pair, like the recall).
* **Eq. 6.** ``p_{m,y} = sum_{v in V^Selected} p_{m,v} z_vy``.
* **Eq. 7.** ``r_{m,y} = alpha p_{m,y} + (1 - alpha) / |Y| sum_{y'} p_{m,y'}``.

Run ``python benchmarks/reference_mll.py --smoke`` for a self-check against numbers worked by hand.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ReferenceEstimate", "class_node_similarities", "top_nodes", "transfer_matrix", "predicted_nodes",
           "predicted_node", "node_precision", "class_estimates", "reuse_scores", "reference_estimate"]


@dataclass(frozen=True)
class ReferenceEstimate:
    """Everything selection computes, in the shapes of ``FastEq5.estimate``."""

    selected: np.ndarray  # (S,) sorted node indices: V^Selected
    Z: np.ndarray  # S x C transfer matrix
    sims: np.ndarray  # C x V class-node similarities
    top: np.ndarray  # C x k_nodes: each class's nodes, most similar first
    P: np.ndarray  # M x S: Eq. 5
    p: np.ndarray  # M x C: Eq. 6
    r: np.ndarray  # M x C: Eq. 7


# -- caption matching --------------------------------------------------------------------------------------
def class_node_similarities(class_emb: np.ndarray, node_emb: np.ndarray) -> np.ndarray:
    """C x V: the cosine similarity (dot product of normalised embeddings) of every class with every node."""
    nodes = np.asarray(node_emb, np.float64)
    sims = np.zeros((len(class_emb), len(nodes)))
    for y, c in enumerate(np.asarray(class_emb, np.float64)):
        sims[y] = nodes @ c
    return sims


def top_nodes(similarities: Sequence[float], k: int) -> list[int]:
    """The ``k`` nodes most similar to one class, most similar first; equal similarities: lower index first."""
    return sorted(range(len(similarities)), key=lambda v: (-similarities[v], v))[:k]


def transfer_matrix(class_emb: np.ndarray, node_emb: np.ndarray, k_nodes: int, *,
                    normalize: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(selected, Z, sims, top)`` of the module docstring."""
    if k_nodes < 1:
        raise ValueError("k_nodes must be >= 1")
    sims = class_node_similarities(class_emb, node_emb)
    top = [top_nodes(sims[y].tolist(), k_nodes) for y in range(len(sims))]
    selected = sorted({v for nodes in top for v in nodes})
    position = {v: i for i, v in enumerate(selected)}
    Z = np.zeros((len(selected), len(sims)))
    for y, nodes in enumerate(top):
        for v in nodes:
            Z[position[v], y] = sims[y, v]
    if normalize:
        for y in range(Z.shape[1]):
            column = [max(z, 0.0) for z in Z[:, y]]
            total = max(sum(column), 1e-12)
            Z[:, y] = [z / total for z in column]
    return np.asarray(selected, np.int64), Z, sims, np.asarray(top, np.int64).reshape(len(sims), -1)


# -- Eq. 5 ------------------------------------------------------------------------------------------------
def _exact_similarity(x: np.ndarray, c: np.ndarray) -> float:
    """Correctly rounded dot product of two float32 vectors (their float64 products are exact)."""
    return math.fsum((np.asarray(x, np.float64) * np.asarray(c, np.float64)).tolist())


def predicted_nodes(images: np.ndarray, captions: np.ndarray) -> list[int]:
    """For each image row, the row of ``captions`` (one per selected node, in node order) it matches best.

    Both are float32 label embeddings. A float64 product finds each image's best row; rows within a rigorous
    rounding bound of it are compared with exact sums, and among exact ties the first (lowest node) wins.
    """
    X = np.asarray(images, np.float32).astype(np.float64)
    C = np.asarray(captions, np.float32).astype(np.float64)
    approx = X @ C.T
    cmax = float(np.linalg.norm(C, axis=1).max()) if len(C) else 0.0
    out = []
    for i in range(len(X)):
        row = approx[i]
        bound = 4 * (X.shape[1] + 2) * 2.0**-53 * float(np.linalg.norm(X[i])) * cmax  # >= |float64 - exact|
        rivals = np.flatnonzero(row >= row.max() - 2 * bound).tolist()
        if len(rivals) == 1:
            out.append(rivals[0])
            continue
        exact = [_exact_similarity(X[i], C[j]) for j in rivals]
        out.append(rivals[exact.index(max(exact))])
    return out


def predicted_node(image: np.ndarray, captions: np.ndarray) -> int:
    """:func:`predicted_nodes` for one image."""
    return predicted_nodes(np.asarray(image)[None, :], captions)[0]


def node_precision(image_emb: np.ndarray, caption_emb: np.ndarray, node_images: Sequence[Sequence[int]],
                   selected: Sequence[int], metric: str = "precision") -> np.ndarray:
    """Eq. 5 for one model: ``p_{m,v}`` for every selected node (in the order of ``selected``).

    ``image_emb`` (N x D) and ``caption_emb`` (V x D, one row per node) are the model's label embeddings;
    ``node_images[v]`` lists the rows of ``image_emb`` that belong to node v (``X_v``).
    """
    if metric not in ("precision", "f1"):
        raise ValueError(f"unknown metric {metric!r}")
    selected = list(selected)
    captions = np.asarray(caption_emb, np.float32)[selected]
    # the argmax depends on the image and S only: decide each distinct image of the selected nodes once
    rows = sorted({x for v in selected for x in node_images[v]})
    prediction = dict(zip(rows, predicted_nodes(np.asarray(image_emb)[rows], captions))) if rows else {}
    hits = [0] * len(selected)  # tp_v
    predicted = [0] * len(selected)  # pairs (u, x) predicted as v
    for s, v in enumerate(selected):
        for x in node_images[v]:
            predicted[prediction[x]] += 1
            if prediction[x] == s:
                hits[s] += 1
    out = np.zeros(len(selected))
    for s, v in enumerate(selected):
        n = len(node_images[v])
        recall = hits[s] / n if n else 0.0
        if metric == "precision":
            out[s] = recall
        else:
            prec = hits[s] / predicted[s] if predicted[s] else 0.0
            out[s] = 2 * prec * recall / (prec + recall) if prec + recall > 0 else 0.0
    return out


# -- Eq. 6 and 7 ------------------------------------------------------------------------------------------
def class_estimates(P: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Eq. 6: ``p[m, y] = sum_v P[m, v] Z[v, y]``."""
    M, S = P.shape
    C = Z.shape[1]
    p = np.zeros((M, C))
    for y in range(C):
        matched = [v for v in range(S) if Z[v, y] != 0]  # z_vy = 0 elsewhere
        for m in range(M):
            p[m, y] = sum(P[m, v] * Z[v, y] for v in matched)
    return p


def reuse_scores(p: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 7: ``r[m, y] = alpha p[m, y] + (1 - alpha) / C sum_y' p[m, y']``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    M, C = p.shape
    r = np.zeros((M, C))
    for m in range(M):
        overall = sum(p[m].tolist()) / C
        for y in range(C):
            r[m, y] = alpha * p[m, y] + (1 - alpha) * overall
    return r


def reference_estimate(class_emb: np.ndarray, node_emb: np.ndarray, node_images: Sequence[Sequence[int]],
                       models: Sequence[tuple[np.ndarray, np.ndarray]], *, k_nodes: int = 5, alpha: float = 0.7,
                       metric: str = "precision", normalize_z: bool = False) -> ReferenceEstimate:
    """Eq. 5-7 for every model: ``models[m] = (image_emb N x D, caption_emb V x D)`` of model m's label."""
    selected, Z, sims, top = transfer_matrix(class_emb, node_emb, k_nodes, normalize=normalize_z)
    P = np.zeros((len(models), len(selected)))
    for m, (image_emb, caption_emb) in enumerate(models):
        P[m] = node_precision(image_emb, caption_emb, node_images, selected.tolist(), metric)
    p = class_estimates(P, Z)
    return ReferenceEstimate(selected, Z, sims, top, P, p, reuse_scores(p, alpha))


# -- self-check -------------------------------------------------------------------------------------------
def _hand_worked() -> list[str]:
    """A case small enough to work out by hand; returns the failures (empty: all good)."""
    # 3 nodes in 2-d; node captions (text side) at 0, 90 and 45 degrees; 2 classes
    node_emb = np.array([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    class_emb = np.array([[1.0, 0.0], [0.0, 1.0]])
    # k_nodes=2: class 0 -> nodes 0 (1.0), 2 (0.7071); class 1 -> nodes 1 (1.0), 2 (0.7071); S = {0, 1, 2}
    # node images: X_0 = {0}, X_1 = {1}, X_2 = {0, 1, 2} (node 2 is the parent of 0 and 1, plus image 2)
    node_images = [[0], [1], [0, 1, 2]]
    # one model whose captions sit exactly on the text side; image 2 lies at 45 degrees, images 0/1 near axes
    img = np.array([[0.9, 0.1], [0.1, 0.9], [0.7, 0.7]], np.float32)
    cap = node_emb.astype(np.float32)
    # predictions: image 0 -> node 0 (0.9 > 0.7071*1.0=0.7071), image 1 -> node 1, image 2 -> node 2 (0.99 > 0.7)
    # Eq. 5: p_0 = 1/1, p_1 = 1/1, p_2 = |{2}| / |{0, 1, 2}| = 1/3
    # Eq. 6: p_y0 = 1 * 1 + (1/3) * 0.7071 = 1.2357; p_y1 = the same
    # Eq. 7 (alpha 0.7): r = 0.7 * 1.2357 + 0.3 * 1.2357 = 1.2357
    est = reference_estimate(class_emb, node_emb, node_images, [(img, cap)], k_nodes=2, alpha=0.7)
    h = math.sqrt(0.5)
    want = {"selected": [0, 1, 2], "P": [[1.0, 1.0, 1 / 3]], "p": [[1 + h / 3, 1 + h / 3]],
            "r": [[1 + h / 3, 1 + h / 3]], "Z": [[1.0, 0.0], [0.0, 1.0], [h, h]]}
    fails = [f"{k}: got {getattr(est, k).tolist()}, want {v}" for k, v in want.items()
             if not np.allclose(getattr(est, k), v, rtol=0, atol=1e-12)]
    # F1, predictions counted per (node, image) pair: pairs predicted as node 0 are (0, image 0) and
    # (2, image 0) -> precision 1/2, recall 1/1 -> F1 = 2 * 1/2 * 1 / (3/2) = 2/3; node 1 likewise;
    # node 2: only (2, image 2) -> precision 1/1, recall 1/3 -> F1 = 2 * 1/3 / (4/3) = 1/2
    f1 = reference_estimate(class_emb, node_emb, node_images, [(img, cap)], k_nodes=2, metric="f1").P
    if not np.allclose(f1, [[2 / 3, 2 / 3, 0.5]], atol=1e-12):
        fails.append(f"f1 P: got {f1.tolist()}, want [[2/3, 2/3, 1/2]]")
    # exact ties go to the lowest node: two identical captions
    if predicted_node(np.array([1.0, 0.0], np.float32), np.array([[0, 1], [1, 0], [1, 0]], np.float32)) != 1:
        fails.append("ties must go to the lowest node")
    return fails


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="only the hand-worked self-check (what the tests run)")
    ap.parse_args(argv)
    fails = _hand_worked()
    for f in fails:
        print("FAIL", f)
    print("reference_mll self-check:", "FAILED" if fails else "ok (hand-worked Eq. 5-7, F1, ties)")
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
