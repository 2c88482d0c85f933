"""Labeling throughput per trunk of the offline hub vs the backbone's raw batched forward.

Run:  python benchmarks/bench_labeling.py [--n 128] [--batch 64] [--backbones lite0 lite1 lite2] [--threads 1]
                                          [--ray-workers 1 2 | --ray-workers]   # (no Ray columns)
      python benchmarks/bench_labeling.py --smoke   # 8 synthetic images, conse-lite0 only (a slow test runs it)

Real images: the first ``--n`` files of ``<data>/images/imagenet-sample`` (``get_settings().images_dir``).
Per backbone (the hub's models ``--families`` conse/label/wnhier-<backbone> share its trunk) it prints, in images/s:

* ``raw fwd``     the trunk's forward on already preprocessed tensors (batches of ``--batch``), the ceiling;
* ``prep``        decode + resize + normalise on one thread (the labeler runs it in one background thread);
* ``heads``       the models' ``project_image`` on the trunk output;
* ``label``       ``label_models`` end to end on a temporary hub whose graph holds the N images (captions
                   pre-encoded so text is not timed): decode, forward, heads, shard writes;
* ``ray xW``      ``label_models_ray`` end to end with W Ray actors (a local Ray of ``max(W)`` CPUs started once;
                   each run labels a fresh home, so actor start and model shipping are in the time, for the
                   caption stage (one node caption per model, from the text cache) and the image stage); below the
                   table per W: the fixed cost (a run on W chunks) and the steady rate
                   (N - W*batch images / the difference of the two run times) per worker vs raw fwd, and the
                   caption stage's share of the fixed cost (a run on a graph without images);
* ``ratio``       label / raw fwd (goal >= 0.9), ``ray/W`` the Ray figure per worker / raw fwd, and the split of
                   the labeling wall time.

Thread settings are printed; torch runs ``--threads`` threads while the labeler's preprocessing thread runs
beside it, so on a 2-core machine ``--threads 1`` leaves one core to decoding. No assertions.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pin_threads, rss_mb, skip, synthetic_images, thread_report  # noqa: E402


def _images(n: int) -> list[tuple[str, Path]]:
    from vlmhub.imaging import IMAGE_EXTENSIONS
    from vlmhub.settings import get_settings

    root = get_settings().images_dir / "imagenet-sample"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[:n]
    if not files:
        raise SystemExit(f"no images under {root}")
    return [(f"{p.parent.name}/{p.name}", p) for p in files]


def _graph(refs):
    from vlmhub.concepts.graph import Node, SemanticGraph

    node = Node("n00001740", "entity", "entity, which is that which is perceived to have its own distinct existence",
                (), tuple(sorted(r[0] for r in refs)), True)
    return SemanticGraph((node,), {r[0]: str(r[1]) for r in refs}, ("bench",), len(refs))


def bench_backbone(backbone: str, refs, batch: int, tmp: Path, families=("conse", "label", "wnhier"),
                   ray_workers: tuple[int, ...] = ()) -> dict:
    from vlmhub.labeling.labeler import label_models
    from vlmhub.models import create_model
    from vlmhub.models.runner import _prep_batch
    from vlmhub.settings import Settings, get_settings

    base = get_settings()
    settings = Settings(home=tmp / f"hub-{backbone}", data_dir=base.data_dir, wordnet_dir=base.wordnet_dir, batch_size=batch)
    models = [create_model(f"{fam}-{backbone}", settings) for fam in families]
    trunk = models[0]
    graph = _graph(refs)
    for m in models:  # load weights, class-text matrices and the caption cache before timing
        m.encode_text([graph.nodes[0].caption])
    _ = trunk.net
    n = len(refs)
    # decode + preprocess, one thread
    t = time.perf_counter()
    chunks = [_prep_batch(trunk, refs[i : i + batch]) for i in range(0, n, batch)]
    t_prep = time.perf_counter() - t
    # raw forward on the preprocessed tensors
    trunk.image_features(chunks[0][:2])  # warm-up
    t = time.perf_counter()
    feats = [trunk.image_features(c) for c in chunks]
    t_fwd = time.perf_counter() - t
    # heads
    for m in models:
        m.project_image(feats[0][:2])
    t = time.perf_counter()
    for f in feats:
        for m in models:
            m.project_image(f)
    t_heads = time.perf_counter() - t
    # end to end
    t = time.perf_counter()
    label_models(models, graph, settings, batch_size=batch, progress=False)
    t_label = time.perf_counter() - t
    # shard writes alone (same sizes as the labeler writes)
    from vlmhub.storage import EmbeddingTable

    t = time.perf_counter()
    for m in models:
        dim = m.spec.embed_dim
        tab = EmbeddingTable(tmp / f"w-{backbone}-{m.id}")
        for i in range(0, n, batch):
            ids = [r[0] for r in refs[i : i + batch]]
            tab.append(ids, np.ones((len(ids), dim), np.float32))
    t_write = time.perf_counter() - t
    out = {"n": n, "prep": t_prep, "fwd": t_fwd, "heads": t_heads, "label": t_label, "write": t_write}
    if ray_workers:
        import dataclasses

        from vlmhub.labeling.ray_backend import label_models_ray
        from vlmhub.labeling.labels import LabelStore

        from vlmhub.labeling.labels import caption_key

        def label_bytes(s):  # images and captions, both computed on Ray in the Ray runs
            labs = {m.id: LabelStore(s).label(m.id) for m in models}
            return {mid: (lab.images.get([r[0] for r in refs]).tobytes(),
                          lab.captions.get([caption_key(c) for c in graph.captions()]).tobytes()) for mid, lab in labs.items()}

        want = label_bytes(settings)
        for w in ray_workers:
            # the caption stage alone (its actors start, models shipped, one caption chunk per model): a graph
            # whose node has no images
            s = dataclasses.replace(settings, home=tmp / f"hub-{backbone}-ray{w}-captions")
            t = time.perf_counter()
            label_models_ray(models, _graph([]), s, concurrency=w, batch_size=batch, progress=False)
            out[f"ray{w}_captions"] = time.perf_counter() - t
            # the fixed cost (actors start, models shipped, one chunk each): a run on w chunks only
            few = refs[: batch * w]
            s = dataclasses.replace(settings, home=tmp / f"hub-{backbone}-ray{w}-fixed")
            t = time.perf_counter()
            label_models_ray(models, _graph(few), s, concurrency=w, batch_size=batch, progress=False)
            out[f"ray{w}_fixed"] = time.perf_counter() - t
            s = dataclasses.replace(settings, home=tmp / f"hub-{backbone}-ray{w}")
            t = time.perf_counter()
            label_models_ray(models, graph, s, concurrency=w, batch_size=batch, progress=False)
            out[f"ray{w}"] = time.perf_counter() - t
            out[f"ray{w}_steady"] = ((n - len(few)) / (out[f"ray{w}"] - out[f"ray{w}_fixed"])
                                     if n > len(few) and out[f"ray{w}"] > out[f"ray{w}_fixed"] else float("nan"))
            out[f"ray{w}_same"] = label_bytes(s) == want
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--backbones", nargs="+", default=["lite0", "lite1", "lite2"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--families", nargs="+", default=["conse", "label", "wnhier"], help="heads on each trunk")
    ap.add_argument("--smoke", action="store_true",
                    help="8 synthetic images, batch 4, conse-lite0 only (its 1,000 class texts are encoded once: ~10 s)")
    ap.add_argument("--ray-workers", type=int, nargs="*", default=[1, 2],
                    help="also label on a local Ray with these numbers of actors (none: no Ray columns)")
    args = ap.parse_args(argv)
    pin_threads(args.threads)
    ray_workers = tuple(args.ray_workers)
    if ray_workers:
        try:
            import ray
            import ray.data  # noqa: F401
        except ImportError:
            print("Ray is not installed (pip install 'vlmhub[ray]'): no Ray columns")
            ray_workers = ()
    if ray_workers:
        t = time.perf_counter()
        ray.init(num_cpus=max(ray_workers), include_dashboard=False, object_store_memory=200 * 1024**2,
                 log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        print(f"local Ray with {max(ray_workers)} CPUs started in {time.perf_counter() - t:.1f} s (not in the figures)")
    print(thread_report())
    tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-label-"))
    differ = False
    try:
        if args.smoke:
            args.n, args.batch, args.backbones, args.families = 8, 4, ["lite0"], ["conse"]
            refs = synthetic_images(tmp / "images", args.n)
            print(f"{len(refs)} SYNTHETIC images (smoke), batch {args.batch}; figures in images/s")
        else:
            refs = _images(args.n)
            print(f"{len(refs)} real images from imagenet-sample, batch {args.batch}; figures in images/s")
        ray_cols = "".join(f"{f'ray x{w}':>9}" for w in ray_workers)
        ray_ratio = "".join(f"{f'ray/{w}':>7}" for w in ray_workers)
        print(f"{'trunk':<18}{'raw fwd':>9}{'prep':>8}{'heads':>8}{'label':>8}{ray_cols}{'ratio':>7}{ray_ratio}   "
              "labeling wall time split (serial estimate)")
        for b in args.backbones:
            try:
                r = bench_backbone(b, refs, args.batch, tmp, args.families, ray_workers)
            except ImportError as exc:  # the weights' package (MissingExtraError is an ImportError)
                if args.smoke:
                    skip(f"efficientnet-{b} weights are not installed: {exc}")
                raise
            n = r["n"]
            ips = {k: n / r[k] for k in ("prep", "fwd", "heads", "label", "write")}
            serial = r["fwd"] + r["heads"] + r["write"]
            split = (f"fwd {100 * r['fwd'] / r['label']:.0f}%, heads {100 * r['heads'] / r['label']:.0f}%, "
                     f"writes {100 * r['write'] / r['label']:.0f}%, prep {r['prep']:.2f} s "
                     f"({'hidden' if r['prep'] < serial else 'NOT hidden'} behind fwd+heads+writes {serial:.2f} s)")
            rays = {w: n / r[f"ray{w}"] for w in ray_workers}
            print(f"efficientnet-{b:<5}{ips['fwd']:>9.1f}{ips['prep']:>8.1f}{ips['heads']:>8.0f}{ips['label']:>8.1f}"
                  + "".join(f"{rays[w]:>9.1f}" for w in ray_workers)
                  + f"{ips['label'] / ips['fwd']:>7.2f}" + "".join(f"{rays[w] / w / ips['fwd']:>7.2f}" for w in ray_workers)
                  + f"   {split}")
            for w in ray_workers:
                print(f"  ray x{w}: end to end {rays[w]:.1f} img/s, fixed cost {r[f'ray{w}_fixed']:.1f} s (actors, "
                      f"{w} chunk(s); of it the caption stage {r[f'ray{w}_captions']:.1f} s), steady {r[f'ray{w}_steady']:.1f} img/s = {r[f'ray{w}_steady'] / w / ips['fwd']:.2f} "
                      f"x raw fwd per worker; labels byte for byte the single-process labels: {r[f'ray{w}_same']}")
                differ = differ or not r[f"ray{w}_same"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if ray_workers:
            ray.shutdown()
    print(f"peak RSS {rss_mb():.0f} MB")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
