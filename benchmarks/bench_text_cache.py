"""Text-embedding cache: time to append one new text and to look up 200 cached ones, at 10 / 500 / 5000 entries.

old: the sharded EmbeddingTable cache (every append re-reads the index and all shards);
new: the bounded SQLite VectorCache (vlmhub.storage.textcache).

    python benchmarks/bench_text_cache.py            # 10, 500, 5000 entries
    python benchmarks/bench_text_cache.py --smoke    # 10, 50 entries (a test runs this)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from vlmhub.storage import EmbeddingTable
from vlmhub.storage.textcache import VectorCache

D = 384


def _fill_old(d: Path, n: int, rng) -> EmbeddingTable:
    t = EmbeddingTable(d)
    for i in range(n):  # one shard per distinct task, as the service wrote them
        t.append([f"k{i}"], rng.standard_normal((1, D)).astype(np.float32))
    return t


def _fill_new(p: Path, n: int, rng) -> VectorCache:
    c = VectorCache(p, max_entries=n + 1000)  # room for the timed appends: nothing evicted
    for i in range(n):
        c.put([f"k{i}"], rng.standard_normal((1, D)).astype(np.float32))
    return c


def measure(n: int, reps: int, old: bool) -> dict:
    rng = np.random.default_rng(0)
    out = {"entries": n}
    with tempfile.TemporaryDirectory() as tmp:
        look = [f"k{i}" for i in range(0, n, max(1, n // 200))]
        c = _fill_new(Path(tmp) / "new.sqlite", n, rng)
        t0 = time.perf_counter()
        for r in range(reps):
            c.put([f"new{r}"], rng.standard_normal((1, D)).astype(np.float32))
        out["new_append_ms"] = 1e3 * (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            got = c.get(look, dim=D)
        out["new_lookup_ms"] = 1e3 * (time.perf_counter() - t0) / reps
        assert len(got) == len(set(look)), (n, len(got), len(look))
        c.close()
        if old:
            t = _fill_old(Path(tmp) / "old", n, rng)
            t0 = time.perf_counter()
            for r in range(reps):
                t.append([f"new{r}"], rng.standard_normal((1, D)).astype(np.float32))
            out["old_append_ms"] = 1e3 * (time.perf_counter() - t0) / reps
            t0 = time.perf_counter()
            for _ in range(reps):
                EmbeddingTable(Path(tmp) / "old").get(look)  # a fresh process/request reads every shard
            out["old_lookup_ms"] = 1e3 * (time.perf_counter() - t0) / reps
    return out


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    ap.add_argument("--no-old", action="store_true", help="skip the old shard cache (slow to fill at 5000)")
    args = ap.parse_args(argv)
    sizes, reps = ((10, 50), 3) if args.smoke else ((10, 500, 5000), 20)
    rows = [measure(n, reps, old=not args.no_old) for n in sizes]
    print(f"{'entries':>8} {'new append ms':>14} {'new lookup ms':>14} {'old append ms':>14} {'old lookup ms':>14}")
    for r in rows:
        print(f"{r['entries']:>8} {r['new_append_ms']:>14.2f} {r['new_lookup_ms']:>14.2f} "
              f"{r.get('old_append_ms', float('nan')):>14.2f} {r.get('old_lookup_ms', float('nan')):>14.2f}")
    return rows


if __name__ == "__main__":
    main()
