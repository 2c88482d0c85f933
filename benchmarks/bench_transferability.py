"""Time every transferability score on a CLIP-sized probe set: N=500 images, D=512 dims, C=10 classes.

Run:  python benchmarks/bench_transferability.py [--repeats 5] [--n 500] [--d 512] [--classes 10]
      python benchmarks/bench_transferability.py --smoke     # N=40, D=16, C=4, K=10, one repeat (a test runs it)

Prints the best and median wall time per score (no assertions). BLAS threading matters a lot on
small shared machines; set e.g. OPENBLAS_NUM_THREADS=1 for stable numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from scipy import special

from vlmhub.selection.transferability import SCORES, ProbeSet, compute_score, score_names


def make_probe(n: int, d: int, c: int, k: int, seed: int = 0) -> ProbeSet:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    means = rng.standard_normal((c, d)) * 0.3
    feats = (means[y] + rng.standard_normal((n, d))).astype(np.float32)
    logits = rng.standard_normal((n, k))
    logits[np.arange(n), y % k] += 2.0
    return ProbeSet(feats, y, special.softmax(logits, axis=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--source-classes", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny probe set, one repeat (seconds)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n, args.d, args.classes, args.source_classes, args.repeats = 40, 16, 4, 10, 1

    threads = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    print(f"python {platform.python_version()}, numpy {np.__version__}, cpus {os.cpu_count()}, threads {threads}")
    t0 = time.perf_counter()
    probe = make_probe(args.n, args.d, args.classes, args.source_classes)
    print(f"probe: N={args.n} D={args.d} C={args.classes} K={args.source_classes} "
          f"(ProbeSet validation {1e3 * (time.perf_counter() - t0):.1f} ms)")
    print(f"{'score':<18}{'best ms':>10}{'median ms':>11}{'value':>14}")
    for name in score_names():
        compute_score(name, probe)  # warm-up (BLAS initialisation, caches)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            value = compute_score(name, probe)
            times.append(time.perf_counter() - t)
        tag = " (source_probs)" if SCORES[name].needs_source_probs else ""
        print(f"{name:<18}{1e3 * min(times):>10.1f}{1e3 * statistics.median(times):>11.1f}{value:>14.4f}{tag}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
