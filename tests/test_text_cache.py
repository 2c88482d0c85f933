"""The text-embedding cache is bounded (LRU), appends without re-reading everything, and heals when damaged."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np

from vlmhub.models.text import CachedTextEmbedder, HashingEmbedder
from vlmhub.storage.textcache import VectorCache


class _Counting(HashingEmbedder):
    def __init__(self):
        super().__init__(32)
        self.calls = 0

    def encode(self, texts):
        self.calls += len(texts)
        return super().encode(texts)


def test_text_cache_is_bounded_lru_and_one_file(tmp_path):
    inner = _Counting()
    c = CachedTextEmbedder(inner, tmp_path, max_entries=5)
    ref = HashingEmbedder(32).encode([f"t{i}" for i in range(8)])
    np.testing.assert_array_equal(c.encode([f"t{i}" for i in range(3)]), ref[:3])
    c.encode(["t0"])  # t0 is now recently used... (touch_s: force refresh below)
    c.cache.touch_s = -1.0
    c.encode(["t0"])
    c.encode([f"t{i}" for i in range(3, 8)])  # 8 distinct texts into 5 slots
    assert len(c.cache) == 5
    assert sorted(p.name for p in (tmp_path / inner.id).iterdir() if not p.name.startswith("vectors.sqlite")) == []
    inner.calls = 0
    np.testing.assert_array_equal(c.encode(["t7", "t6"]), ref[[7, 6]])
    assert inner.calls == 0  # newest entries kept
    c.encode(["t1"])
    assert inner.calls == 1  # an old one was evicted and is recomputed


def test_lookup_writes_nothing(tmp_path):
    c = CachedTextEmbedder(HashingEmbedder(16), tmp_path)
    assert c.lookup(["never stored"]) == {}
    assert len(c.cache) == 0


def test_damaged_sqlite_heals(tmp_path, caplog):
    p = tmp_path / "v.sqlite"
    VectorCache(p).put(["a"], np.ones((1, 4), np.float32))
    p.write_bytes(b"garbage" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{p}{suffix}").unlink(missing_ok=True)
    with caplog.at_level("WARNING", logger="vlmhub.storage"):
        c = VectorCache(p)
        assert c.get(["a"], dim=4) == {}
        c.put(["a"], np.ones((1, 4), np.float32))
        assert list(c.get(["a"], dim=4)) == ["a"]
    assert "damaged" in caplog.text


def test_bench_text_cache_smoke(capsys, monkeypatch):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_text_cache.py"
    monkeypatch.setattr(sys, "argv", [str(path), "--smoke"])
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert "new append ms" in out and len(out.strip().splitlines()) == 3


def test_a_used_cache_pickles_and_the_copy_reads_the_same_file(tmp_path):
    """A model holding a text cache is shipped to Ray workers by pickle: the copy opens its own connection."""
    import pickle

    c = CachedTextEmbedder(HashingEmbedder(32), tmp_path)
    want = c.encode(["a", "b"])  # the connection (and its lock) now exist
    copy = pickle.loads(pickle.dumps(c))
    copy.inner = counting = _Counting()
    np.testing.assert_array_equal(copy.encode(["a", "b"]), want)
    assert counting.calls == 0  # read from the file, not recomputed
    copy.encode(["c"])  # and the copy writes to it
    assert counting.calls == 1 and set(c.lookup(["c"])) == {"c"}
