"""A small labeled hub for the web tests, screenshots and the web benchmark: the three toy colour models on
a concept set of six WordNet categories (colours, food, animals, plants, artifacts, natural objects), each
concept drawn as noisy swatches of its colour. Labeling takes a few seconds and needs no weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: concept (WordNet 3.0 noun id) -> (name, colour it is drawn in)
CONCEPTS = {
    "n04962784": ("red", "red"), "n04965179": ("orange", "orange"), "n04965661": ("yellow", "yellow"),
    "n04967191": ("green", "green"), "n04968895": ("blue", "blue"), "n04970059": ("purple", "purple"),
    "n07734017": ("tomato", "red"), "n07753592": ("banana", "yellow"), "n07747607": ("orange fruit", "orange"),
    "n01443537": ("goldfish", "orange"), "n02007558": ("flamingo", "red"), "n01594004": ("bluebird", "blue"),
    "n12102133": ("grass", "green"), "n12387839": ("violet", "purple"),
    "n03345487": ("fire engine", "red"), "n04146614": ("school bus", "yellow"), "n09436708": ("sky", "blue"),
}
TOY_IDS = ("toy-a", "toy-b", "toy-c")
COLORS = ("red", "orange", "yellow", "green", "blue", "purple")


def swatch(rgb, seed: int, size: int = 16):
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.asarray(rgb, float)[None, None, :] + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def write_samples(root: Path, per_concept: int = 5) -> Path:
    """The concept-sample folder (``<wnid>/<image>.png`` + dataset.json) under ``root``."""
    from vlmhub.models.toy import COLOR_RGB

    samples = root / "web-samples"
    for i, (wnid, (_name, colour)) in enumerate(CONCEPTS.items()):
        (samples / wnid).mkdir(parents=True, exist_ok=True)
        for j in range(per_concept):
            swatch(COLOR_RGB[colour], 1000 * i + j).save(samples / wnid / f"s{j}.png")
    (samples / "dataset.json").write_text(json.dumps({"name": "web-samples", "kind": "concept-samples", "classes": list(CONCEPTS)}))
    return samples


def build_hub(settings, root: Path):
    """Label the toy models on the web concept set in ``settings``' home; returns the :class:`~vlmhub.hub.Hub`."""
    from vlmhub.hub import Hub

    hub = Hub(settings, model_ids=list(TOY_IDS))
    hub.label(sample_sets=[write_samples(root)], progress=False)
    return hub


def swatch_png(colour: str, path: Path, seed: int = 7) -> Path:
    """One test image of ``colour`` written to ``path``."""
    from vlmhub.models.toy import COLOR_RGB

    swatch(COLOR_RGB[colour], seed, size=24).save(path)
    return path


class LiveServer:
    """``with LiveServer(app) as url:`` -- uvicorn in a daemon thread on 127.0.0.1, a free port."""

    def __init__(self, app) -> None:
        self.app = app

    def __enter__(self) -> str:
        import socket
        import threading
        import time

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def demo_service(home: str | None, root: Path, wordnet_dir: Path | None = None):
    """A :class:`~vlmhub.service.VlmhubService` over the hub at ``home`` (already labeled), or, without one,
    over the toy web hub labeled in ``root`` (for screenshots and benchmarks)."""
    from vlmhub.service import VlmhubService
    from vlmhub.settings import Settings, default_data_dir, get_settings

    if home:
        from vlmhub.hub import Hub

        return VlmhubService(Hub(Settings(home=Path(home))))
    base = get_settings()
    settings = Settings(home=root / "hub", data_dir=default_data_dir(), wordnet_dir=wordnet_dir or base.wordnet_dir,
                        batch_size=16)
    return VlmhubService(build_hub(settings, root), embedder="hashing256")
