"""Admission checks for zero-shot models: run before a model enters the hub (``vlmhub models add``).

:func:`check_model` feeds a model synthetic images (seeded noise and solid colours, made here, so no data is
needed) and short texts, and reports one :class:`CheckResult` per check:

===========================  ===========================================================================
check                        passes when
===========================  ===========================================================================
``preprocess``               ``model.preprocess`` turns every PIL image into a (C, H, W) tensor of one shape
``logit_scale``              ``model.logit_scale`` is finite and > 0
``image_embeddings``         image embeddings are finite, shaped (N, ``spec.embed_dim``)
``text_embeddings``          text embeddings are finite, shaped (N, ``spec.embed_dim``)
``image_normalised``         every image embedding has norm 1 ± ``norm_tol`` (1e-3)
``text_normalised``          every text embedding has norm 1 ± ``norm_tol``
``image_deterministic``      two calls on the same batch differ by at most ``determinism_tol`` (1e-4)
``text_deterministic``       likewise for texts
``image_batch_consistency``  rows of the batch call equal batch-of-one calls within ``batch_tol`` (1e-3)
``text_batch_consistency``   likewise for texts
``image_time``               the faster of two full image batches takes <= ``max_seconds_per_image_batch``
``text_time``                the faster of two full text batches takes <= ``max_seconds_per_text_batch``
``memory``                   peak resident memory grows by <= ``max_memory_mb`` while the checks run
``zero_shot_sanity``         (with ``zero_shot=True``; ``vlmhub models add`` runs it by default) a few dozen
                             colour swatches (``zero_shot_per_class`` noisy shades of each colour) are matched
                             to their colour names with top-1 accuracy >= ``zero_shot_min_accuracy`` *and*
                             clearly above chance: one-sided binomial p-value vs 1/n_colours <= ``zero_shot_max_p``
===========================  ===========================================================================

The image side is run the way the hub runs it: ``project_image(image_features(pixels))`` (trunk, then head).

Memory is measured as the increase of the process's resident set size (RSS) over its value when the checks
start: a background thread samples ``/proc/self/statm`` every few milliseconds, and the increase of
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the kernel's exact peak, which only moves when the process sets
a new lifetime peak) is taken too; the larger of the two is reported. tracemalloc is not used because it sees
only Python allocations, not the tensors torch allocates in C++. Loading the weights happens before the
checks and is not counted; the budget bounds the working memory of inference on a batch.

A check that raises is reported as failed with the exception; :func:`check_model` itself does not raise
on a broken model.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from ..errors import ConfigError, ModelCheckError

__all__ = ["CheckBudget", "CheckResult", "CheckReport", "check_model", "synthetic_images", "zero_shot_images",
           "binomial_p_value", "COLOURS"]

#: solid colours of the synthetic images (also the classes of the zero-shot sanity check)
COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 20, 20)),
    ("green", (20, 180, 40)),
    ("blue", (20, 40, 220)),
    ("yellow", (240, 220, 20)),
    ("black", (0, 0, 0)),
    ("white", (255, 255, 255)),
)

_TEXTS = (
    "a photo of a dog.",
    "a photo of a cat.",
    "a red square",
    "an aeroplane flying over the sea at dusk",
    "x",
    "a photo of a tabby cat sleeping on a sofa next to a window on a sunny afternoon.",
    "a blurry photo of a bicycle.",
    "a close-up photo of a green leaf.",
)


@dataclass(frozen=True)
class CheckBudget:
    """Limits and tolerances of :func:`check_model` (all checks use the same synthetic batch).

    ``batch_size`` images and texts form the "many" batch; ``max_seconds_per_*_batch`` bound the time of one
    such batch on the model's device; ``max_memory_mb`` bounds the peak RSS increase during the checks.
    """

    batch_size: int = 8
    image_size: int = 64
    seed: int = 0
    max_seconds_per_image_batch: float = 60.0
    max_seconds_per_text_batch: float = 30.0
    max_memory_mb: float = 4096.0
    norm_tol: float = 1e-3
    determinism_tol: float = 1e-4
    batch_tol: float = 1e-3
    zero_shot: bool = False
    zero_shot_min_accuracy: float = 0.5
    zero_shot_per_class: int = 6
    zero_shot_max_p: float = 1e-3

    def __post_init__(self) -> None:
        if int(self.batch_size) < 2:
            raise ConfigError("CheckBudget.batch_size must be at least 2 (the checks compare batch sizes 1 and many)")
        for name in ("max_seconds_per_image_batch", "max_seconds_per_text_batch", "max_memory_mb"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"CheckBudget.{name} must be > 0")
        if int(self.zero_shot_per_class) < 1:
            raise ConfigError("CheckBudget.zero_shot_per_class must be at least 1")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``detail`` says what was measured (and why it failed)."""

    name: str
    passed: bool
    detail: str
    seconds: float


@dataclass(frozen=True)
class CheckReport:
    """Every check's result for one model; :attr:`passed` when all passed."""

    model_id: str
    embed_dim: int
    results: tuple[CheckResult, ...]
    budget: CheckBudget = field(default_factory=CheckBudget)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def result(self, name: str) -> CheckResult:
        """The result of the check called ``name`` (KeyError if it did not run)."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON-ready form (``vlmhub models check ID --json``)."""
        return {
            "model_id": self.model_id,
            "embed_dim": self.embed_dim,
            "passed": self.passed,
            "seconds": round(self.seconds, 4),
            "budget": asdict(self.budget),
            "results": [
                {"name": r.name, "passed": r.passed, "detail": r.detail, "seconds": round(r.seconds, 4)} for r in self.results
            ],
        }

    def format(self) -> str:
        """A readable multi-line summary, one line per check."""
        n_ok = sum(r.passed for r in self.results)
        head = f"model check of {self.model_id!r}: {'PASSED' if self.passed else 'FAILED'} ({n_ok}/{len(self.results)} checks, {self.seconds:.2f}s)"
        width = max((len(r.name) for r in self.results), default=4)
        lines = [head]
        for r in self.results:
            lines.append(f"  [{'ok' if r.passed else 'FAIL':>4}] {r.name:<{width}}  {r.seconds:7.3f}s  {r.detail}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# -- synthetic data ---------------------------------------------------------------------------------------------
def synthetic_images(n: int = 8, size: int = 64, seed: int = 0) -> list:
    """``n`` PIL RGB images: the solid :data:`COLOURS` first, then seeded uniform noise; same seed, same images."""
    from PIL import Image  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i < len(COLOURS):
            arr = np.empty((size, size, 3), dtype=np.uint8)
            arr[...] = COLOURS[i][1]
        else:
            arr = rng.integers(0, 256, size=(size, size + 8 * (i % 3), 3), dtype=np.uint8)  # varied aspect ratios
        out.append(Image.fromarray(arr).convert("RGB"))
    return out


def _texts(n: int) -> list[str]:
    return [_TEXTS[i % len(_TEXTS)] + ("" if i < len(_TEXTS) else f" ({i})") for i in range(n)]


# -- memory -----------------------------------------------------------------------------------------------------
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024  # bytes on macOS, KiB on Linux


class _MemorySampler:
    """Peak RSS increase over the block (sampled RSS and the kernel's ru_maxrss, the larger)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.base = _rss_bytes()
        self.base_max = _maxrss_bytes()
        self.peak = self.base or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if self.base is not None else None

    def _run(self) -> None:
        while not self._stop.is_set():
            v = _rss_bytes()
            if v is not None and v > self.peak:
                self.peak = v
            self._stop.wait(self.interval)

    def __enter__(self) -> "_MemorySampler":
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        v = _rss_bytes()
        if v is not None:
            self.peak = max(self.peak, v)

    @property
    def increase_mb(self) -> float:
        sampled = (self.peak - self.base) if self.base is not None else 0
        kernel = _maxrss_bytes() - self.base_max
        return max(sampled, kernel, 0) / 2**20


# -- checks -----------------------------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> tuple[Any, float, BaseException | None]:
    t = time.perf_counter()
    try:
        out = fn()
        return out, time.perf_counter() - t, None
    except Exception as exc:  # noqa: BLE001 - a broken model is reported, not raised
        return None, time.perf_counter() - t, exc


def _err(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"raised {type(exc).__name__}: {msg[0] if msg else ''}"[:300]


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32) if not isinstance(x, np.ndarray) else x


def _shape_check(name: str, emb: np.ndarray | None, n: int, dim: int, seconds: float, exc: BaseException | None) -> CheckResult:
    if exc is not None or emb is None:
        return CheckResult(name, False, _err(exc) if exc else "returned nothing", seconds)
    if emb.ndim != 2 or emb.shape != (n, dim):
        return CheckResult(name, False, f"shape {tuple(emb.shape)}, expected ({n}, {dim}) (spec.embed_dim={dim})", seconds)
    bad = int((~np.isfinite(emb)).sum())
    if bad:
        return CheckResult(name, False, f"{bad} non-finite values (NaN/inf) in a {emb.shape[0]}x{emb.shape[1]} batch", seconds)
    if emb.dtype != np.float32:
        return CheckResult(name, False, f"dtype {emb.dtype}, expected float32", seconds)
    return CheckResult(name, True, f"shape ({n}, {dim}), all finite, float32", seconds)


def _norm_check(name: str, emb: np.ndarray | None, tol: float) -> CheckResult:
    if emb is None or emb.ndim != 2 or not np.isfinite(emb).all():
        return CheckResult(name, False, "skipped: the embeddings are missing, misshapen or not finite", 0.0)
    norms = np.linalg.norm(emb.astype(np.float64), axis=1)
    dev = float(np.max(np.abs(norms - 1.0))) if norms.size else 0.0
    ok = dev <= tol
    return CheckResult(
        name, ok, f"norms in [{norms.min():.6f}, {norms.max():.6f}], max |norm-1| = {dev:.2e} ({'<=' if ok else '>'} {tol:g})", 0.0
    )


def _diff_check(name: str, a: np.ndarray | None, b: np.ndarray | None, tol: float, what: str, seconds: float,
                exc: BaseException | None) -> CheckResult:
    if exc is not None:
        return CheckResult(name, False, _err(exc), seconds)
    if a is None or b is None or a.shape != b.shape:
        shapes = f"{None if a is None else a.shape} vs {None if b is None else b.shape}"
        return CheckResult(name, False, f"{what}: shapes differ or missing ({shapes})", seconds)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return CheckResult(name, False, f"{what}: not comparable, embeddings are not finite", seconds)
    d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    ok = d <= tol
    return CheckResult(name, ok, f"{what}: max abs diff {d:.2e} ({'<=' if ok else '>'} {tol:g})", seconds)


def check_model(model, *, budget: CheckBudget | None = None, images: Sequence[Any] | None = None) -> CheckReport:
    """Run every admission check on ``model`` (a :class:`~vlmhub.models.base.ZeroShotModel`).

    ``images`` (PIL images, at least 2) replace the synthetic ones for the label-free checks. Never raises on a
    broken model: failures are in the report.
    """
    budget = budget or CheckBudget()
    import torch  # noqa: PLC0415

    t_all = time.perf_counter()
    results: list[CheckResult] = []
    spec = getattr(model, "spec", None)
    model_id = str(getattr(spec, "id", type(model).__name__))
    dim = int(getattr(spec, "embed_dim", -1))
    imgs = list(images) if images is not None else synthetic_images(budget.batch_size, budget.image_size, budget.seed)
    n_img = len(imgs)
    texts = _texts(budget.batch_size)
    n_txt = len(texts)

    def enc_img(pix):
        return _as_array(model.project_image(model.image_features(pix)))

    def enc_txt(tx):
        return _as_array(model.encode_text(list(tx)))

    with _MemorySampler() as mem, torch.no_grad():
        # logit scale
        try:
            scale = float(model.logit_scale)
            ok = math.isfinite(scale) and scale > 0
            results.append(CheckResult("logit_scale", ok, f"logit_scale = {scale:g} ({'finite and > 0' if ok else 'must be finite and > 0'})", 0.0))
        except Exception as exc:  # noqa: BLE001
            results.append(CheckResult("logit_scale", False, _err(exc), 0.0))

        # preprocessing
        def _prep():
            ts = [model.preprocess(im) for im in imgs]
            shapes = {tuple(t.shape) for t in ts}
            if len(shapes) != 1 or len(next(iter(shapes))) != 3:
                raise ModelCheckError(f"preprocess gave tensors of shapes {sorted(shapes)}; expected one (C, H, W) shape")
            return torch.stack([torch.as_tensor(t) for t in ts])

        pixels, sec, exc = _timed(_prep)
        results.append(
            CheckResult("preprocess", exc is None, _err(exc) if exc else f"{n_img} images -> {tuple(pixels.shape)}", sec)
        )

        # image side
        if pixels is not None:
            e1, s1, x1 = _timed(lambda: enc_img(pixels))
            results.append(_shape_check("image_embeddings", e1, n_img, dim, s1, x1))
            results.append(_norm_check("image_normalised", e1, budget.norm_tol))
            e2, s2, x2 = _timed(lambda: enc_img(pixels))
            results.append(_diff_check("image_deterministic", e1, e2, budget.determinism_tol, "two calls on one batch", s2, x1 or x2))
            rows, s3, x3 = _timed(lambda: np.concatenate([enc_img(pixels[i : i + 1]) for i in range(n_img)], axis=0))
            results.append(_diff_check("image_batch_consistency", e1, rows, budget.batch_tol, f"batch of {n_img} vs {n_img} batches of 1", s3, x1 or x3))
            t_img = min(s1, s2) if x1 is None and x2 is None else None
            results.append(_time_check("image_time", t_img, budget.max_seconds_per_image_batch, n_img))
        else:
            for name in ("image_embeddings", "image_normalised", "image_deterministic", "image_batch_consistency", "image_time"):
                results.append(CheckResult(name, False, "skipped: preprocessing failed", 0.0))

        # text side
        f1, s1, x1 = _timed(lambda: enc_txt(texts))
        results.append(_shape_check("text_embeddings", f1, n_txt, dim, s1, x1))
        results.append(_norm_check("text_normalised", f1, budget.norm_tol))
        f2, s2, x2 = _timed(lambda: enc_txt(texts))
        results.append(_diff_check("text_deterministic", f1, f2, budget.determinism_tol, "two calls on one batch", s2, x1 or x2))
        rows, s3, x3 = _timed(lambda: np.concatenate([enc_txt(texts[i : i + 1]) for i in range(n_txt)], axis=0))
        results.append(_diff_check("text_batch_consistency", f1, rows, budget.batch_tol, f"batch of {n_txt} vs {n_txt} batches of 1", s3, x1 or x3))
        t_txt = min(s1, s2) if x1 is None and x2 is None else None
        results.append(_time_check("text_time", t_txt, budget.max_seconds_per_text_batch, n_txt))

        if budget.zero_shot:
            results.append(_zero_shot(model, budget, torch))

    inc = mem.increase_mb
    ok = inc <= budget.max_memory_mb
    results.append(CheckResult("memory", ok, f"peak RSS increase {inc:.1f} MiB ({'<=' if ok else '>'} {budget.max_memory_mb:g} MiB)", 0.0))
    return CheckReport(model_id=model_id, embed_dim=dim, results=tuple(results), budget=budget, seconds=time.perf_counter() - t_all)


def _time_check(name: str, seconds: float | None, limit: float, n: int) -> CheckResult:
    if seconds is None:
        return CheckResult(name, False, "skipped: the batch call failed", 0.0)
    ok = seconds <= limit
    return CheckResult(name, ok, f"{seconds:.3f}s per batch of {n} ({'<=' if ok else '>'} {limit:g}s)", seconds)


def zero_shot_images(per_class: int = 6, size: int = 64, seed: int = 0) -> tuple[list, list[int]]:
    """Colour swatches for the zero-shot check: ``per_class`` shades of each of :data:`COLOURS` (the first
    solid, the others with seeded brightness jitter and pixel noise, varied aspect ratios) and their class indices."""
    from PIL import Image  # noqa: PLC0415

    rng = np.random.default_rng(seed + 7919)
    images, labels = [], []
    for ci, (_, rgb) in enumerate(COLOURS):
        for j in range(per_class):
            shape = (size, size + 8 * (j % 3), 3)
            base = np.asarray(rgb, dtype=np.float64)
            if j:
                base = base * rng.uniform(0.85, 1.1) + rng.normal(0, 8, 3)
                arr = base[None, None, :] + rng.normal(0, 10, shape)
            else:
                arr = np.broadcast_to(base, shape)
            images.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert("RGB"))
            labels.append(ci)
    return images, labels


def binomial_p_value(hits: int, n: int, p: float) -> float:
    """One-sided P(X >= hits) for X ~ Binomial(n, p): how likely so many hits are by chance."""
    return float(min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(hits, 0), n + 1))))


def _zero_shot(model, budget: CheckBudget, torch) -> CheckResult:
    t = time.perf_counter()
    try:
        imgs, labels = zero_shot_images(budget.zero_shot_per_class, budget.image_size, budget.seed)
        pix = torch.stack([torch.as_tensor(model.preprocess(im)) for im in imgs])
        emb = _as_array(model.project_image(model.image_features(pix)))
        names = [c for c, _ in COLOURS]
        cls = model.class_embeddings(names, ["a photo of the colour {}.", "a plain {} image.", "{}"])
        pred = np.argmax(emb @ cls.T, axis=1)
        truth = np.asarray(labels)
        hits = int(np.sum(pred == truth))
        acc = hits / len(truth)
        pval = binomial_p_value(hits, len(truth), 1.0 / len(names))
    except Exception as exc:  # noqa: BLE001
        return CheckResult("zero_shot_sanity", False, _err(exc), time.perf_counter() - t)
    ok = acc >= budget.zero_shot_min_accuracy and pval <= budget.zero_shot_max_p
    detail = (f"colour top-1 accuracy {acc:.2f} on {len(truth)} swatches ({'>=' if acc >= budget.zero_shot_min_accuracy else '<'} "
              f"{budget.zero_shot_min_accuracy:g}), chance {1 / len(names):.2f}, binomial p = {pval:.1e} "
              f"({'<=' if pval <= budget.zero_shot_max_p else '>'} {budget.zero_shot_max_p:g})")
    if not ok:
        detail += "; the model cannot tell basic colours apart (random or broken weights?)"
    confused: dict[str, int] = {}
    for i, p in zip(truth, pred):
        if i != p:
            key = f"{names[i]}->{names[p]}"
            confused[key] = confused.get(key, 0) + 1
    if confused:
        detail += "; confused " + ", ".join(f"{k} x{v}" for k, v in sorted(confused.items(), key=lambda kv: -kv[1])[:6])
    return CheckResult("zero_shot_sanity", ok, detail, time.perf_counter() - t)
