"""Paper vs. official code on real data: Eq. 5 precision vs F1, Eq. 9 entropy vs inverse-entropy vs uniform.

Runs every hub model once per target image (trunk features are cached under the hub, so re-runs are cheap),
then evaluates each selection/reuse variant on the same probabilities. Prints a Markdown table.

    python benchmarks/mll_variants.py [--targets cifar10-test,...] [--limit-per-class 50] [--home DIR]
    python benchmarks/mll_variants.py --smoke   # toy colour hub and task, hashing text embedder (a test runs it)

``--smoke`` runs the same table on a throw-away hub of the three toy colour models (labeled on synthetic
swatches) and a 6-class colour target, with the hashing text embedder instead of MiniLM: seconds, no data.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_toy_hub  # noqa: E402


def main(argv=None) -> int:
    from vlmhub.hub import Hub
    from vlmhub.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--targets", default="cifar10-test,mnist-test,gtsrb-test,fer2013-test,dtd10,flowers5")
    ap.add_argument("--limit-per-class", type=int, default=50)
    ap.add_argument("--home")
    ap.add_argument("--smoke", action="store_true", help="toy colour hub and task, hashing embedder (seconds, no data)")
    args = ap.parse_args(argv)
    if args.smoke:
        tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-variants-"))
        try:
            hub, task_dir = make_toy_hub(tmp)
            return run(hub, hub.settings, [task_dir], 4, {"text_embedder": "hashing"})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    settings = Settings(home=args.home) if args.home else Settings()
    hub = Hub(settings)
    return run(hub, settings, [settings.images_dir / t for t in args.targets.split(",") if t], args.limit_per_class, {})


def run(hub, settings, target_dirs, limit_per_class: int, selector_options: dict) -> int:
    """Print the variant table for the target folders ``target_dirs``."""
    from vlmhub.evaluation import evaluate_task
    from vlmhub.evaluation.evaluate import model_probabilities
    from vlmhub.tasks import load_task, task_images

    models = hub.models(hub.labeled_model_ids())
    variants = list(itertools.product(["precision", "f1"], ["entropy", "inverse_entropy", "uniform"]))
    table: dict[tuple, dict[str, float]] = {}
    base: dict[str, dict[str, float]] = {}
    for folder in target_dirs:
        task = load_task(folder)
        t = task.name
        images = task_images(task, limit_per_class=limit_per_class)
        t0 = time.perf_counter()
        probs = model_probabilities(models, task, images, settings)
        print(f"{t}: {len(images)} images, models ran in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for metric, weighting in variants:
            sel = hub.selector(metric=metric, **selector_options)
            res = evaluate_task(task, models, sel, settings, weighting=weighting, progress=False, probs=probs, images=images)
            table.setdefault((metric, weighting), {})[t] = res.accuracy
            base[t] = res.accuracy
    targets = list(base)
    print("| Eq. 5 metric | Eq. 9 weighting | " + " | ".join(f"{t} k1 / k3" for t in targets) + " | mean k1 | mean k3 |")
    print("|---|---|" + "---|" * (len(targets) + 2))
    for (metric, weighting), accs in table.items():
        k1 = [accs[t]["MLL_k1"] for t in targets]
        k3 = [accs[t]["MLL_k3"] for t in targets]
        print(f"| {metric} | {weighting} | " + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(k1, k3))
              + f" | {np.mean(k1):.3f} | {np.mean(k3):.3f} |")
    print("\nReferences: " + "; ".join(f"{t}: INB {base[t]['INB']:.3f}, best single {base[t]['best_single']:.3f}, "
                                       f"oracle {base[t]['oracle_per_class']:.3f}" for t in targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
