"""Each MLL equation against values computed by hand on tiny cases."""

import math

import numpy as np
import pytest

from vlmhub.reuse.ensemble import ensemble_scores, entropy, zero_shot_probs
from vlmhub.selection.mll import class_estimates, node_precision, reuse_scores, top_k_models, transfer_matrix


def test_transfer_matrix_top_k_nodes_and_similarities():
    # 2 classes, 4 nodes, unit vectors in 2-d
    classes = np.array([[1.0, 0.0], [0.0, 1.0]])
    nodes = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    sel, Z, sims = transfer_matrix(classes, nodes, k_nodes=2)
    assert sel.tolist() == [0, 1, 2, 3]
    # class 0 picks nodes 0 (1.0) and 1 (0.8); class 1 picks nodes 3 (1.0) and 2 (0.8)
    np.testing.assert_allclose(Z, [[1.0, 0.0], [0.8, 0.0], [0.0, 0.8], [0.0, 1.0]])
    np.testing.assert_allclose(sims, classes @ nodes.T)
    _, Zn, _ = transfer_matrix(classes, nodes, k_nodes=2, normalize=True)
    np.testing.assert_allclose(Zn.sum(axis=0), [1.0, 1.0])
    np.testing.assert_allclose(Zn[:, 0], [1 / 1.8, 0.8 / 1.8, 0, 0])


def test_transfer_matrix_shares_nodes_between_classes():
    classes = np.array([[1.0, 0.0], [0.9, 0.1]])
    nodes = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    sel, Z, _ = transfer_matrix(classes, nodes, k_nodes=1)
    assert sel.tolist() == [0]
    assert Z.shape == (1, 2)
    np.testing.assert_allclose(Z, [[1.0, 0.9]])


def test_eq5_precision_counts_argmax_over_selected_nodes():
    # 3 selected nodes with captions e0, e1, e2; 4 images
    caps = np.eye(3)
    imgs = np.array([
        [0.9, 0.1, 0.0],  # -> node 0
        [0.2, 0.7, 0.1],  # -> node 1
        [0.6, 0.4, 0.0],  # -> node 0
        [0.1, 0.1, 0.8],  # -> node 2
    ])
    # X_0 = {0, 2}; X_1 = {1, 2}; X_2 = {3}; image 2 belongs to nodes 0 and 1 (an ancestor shares it)
    membership = [(0, 0), (0, 2), (1, 1), (1, 2), (2, 3)]
    p = node_precision(imgs, caps, membership, metric="precision")
    np.testing.assert_allclose(p, [1.0, 0.5, 1.0])
    # F1 (official code): pairs predicted as node 0: (0,0),(0,2),(1,2) -> precision 2/3, recall 1 -> 0.8
    f1 = node_precision(imgs, caps, membership, metric="f1")
    np.testing.assert_allclose(f1, [0.8, 2 * 1 * 0.5 / 1.5, 1.0])


def test_eq5_node_without_images_scores_zero():
    p = node_precision(np.eye(2), np.eye(3)[:, :2], [(0, 0), (1, 1)])
    np.testing.assert_allclose(p, [1.0, 1.0, 0.0])


def test_eq6_and_eq7_by_hand():
    P = np.array([[1.0, 0.5, 0.0], [0.2, 0.2, 1.0]])  # 2 models x 3 nodes
    Z = np.array([[0.9, 0.0], [0.5, 0.0], [0.0, 0.8]])  # 3 nodes x 2 classes
    p_my = class_estimates(P, Z)
    np.testing.assert_allclose(p_my, [[1.15, 0.0], [0.28, 0.8]])
    r = reuse_scores(p_my, alpha=0.7)
    np.testing.assert_allclose(r, [[0.7 * 1.15 + 0.3 * 0.575, 0.3 * 0.575], [0.7 * 0.28 + 0.3 * 0.54, 0.7 * 0.8 + 0.3 * 0.54]])
    top = top_k_models(r, 1)
    assert top[:, 0].tolist() == [0, 1]
    assert top_k_models(r, 5).shape == (2, 2)
    with pytest.raises(ValueError):
        reuse_scores(p_my, 1.5)


def test_top_k_ties_keep_model_order():
    r = np.array([[0.5, 0.1], [0.5, 0.2], [0.4, 0.2]])
    assert top_k_models(r, 2).tolist() == [[0, 1], [1, 2]]


def test_eq1_zero_shot_probs_and_entropy():
    img = np.array([[1.0, 0.0]])
    cls = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = zero_shot_probs(img, cls, logit_scale=2.0)
    np.testing.assert_allclose(p, [[math.e**2 / (math.e**2 + 1), 1 / (math.e**2 + 1)]])
    np.testing.assert_allclose(entropy(np.array([[0.5, 0.5], [1.0, 0.0]])), [math.log(2), 0.0], atol=1e-9)


def test_eq8_9_10_entropy_weighted_ensemble_by_hand():
    # two models, two classes, one image
    pa = np.array([[0.9, 0.1]])  # confident
    pb = np.array([[0.4, 0.6]])  # unsure
    ha = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    hb = -(0.4 * math.log(0.4) + 0.6 * math.log(0.6))
    members = [["a", "b"], ["b"]]
    s = ensemble_scores({"a": pa, "b": pb}, members, "entropy")
    wa, wb = ha / (ha + hb), hb / (ha + hb)  # Eq. 9: proportional to entropy
    np.testing.assert_allclose(s, [[wa * 0.9 + wb * 0.4, 0.6]])
    s_inv = ensemble_scores({"a": pa, "b": pb}, members, "inverse_entropy")
    ia, ib = 1 / ha, 1 / hb
    np.testing.assert_allclose(s_inv, [[(ia * 0.9 + ib * 0.4) / (ia + ib), 0.6]])
    s_uni = ensemble_scores({"a": pa, "b": pb}, members, "uniform")
    np.testing.assert_allclose(s_uni, [[0.65, 0.6]])
    # Eq. 10: the weightings disagree here. Eq. 9 gives the unsure model more weight (class 1 wins);
    # the official inverse-entropy weighting trusts the confident model (class 0 wins).
    assert int(np.argmax(s)) == 1
    assert int(np.argmax(s_inv)) == 0
    with pytest.raises(ValueError):
        ensemble_scores({"a": pa}, [["a"], []])
