"""Atomic writes and the sharded embedding table (resumable, no pickle)."""

import json

import numpy as np
import pytest

from vlmhub.errors import DataError, LabelError
from vlmhub.storage import EmbeddingTable, atomic_write_json, read_json
from vlmhub.storage.atomic import atomic_write_npz


def test_atomic_json_roundtrip_and_no_temp_left(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "x.json", {"k": [1, 2]})
    assert read_json(p) == {"k": [1, 2]}
    assert [f.name for f in p.parent.iterdir()] == ["x.json"]


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(DataError, match="not valid JSON"):
        read_json(bad)


def test_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        atomic_write_npz(tmp_path / "x.npz", a=np.array([{}, 1], dtype=object))


def test_embedding_table_append_get_missing_and_reload(tmp_path):
    t = EmbeddingTable(tmp_path / "t")
    assert len(t) == 0
    t.append(["a", "b"], np.array([[1, 0], [0, 1]], np.float32))
    t.append(["c"], np.array([[0.5, 0.5]], np.float32))
    assert t.missing(["a", "x", "c", "y", "x"]) == ["x", "y"]
    t2 = EmbeddingTable(tmp_path / "t")  # a fresh reader sees the same rows
    np.testing.assert_allclose(t2.get(["c", "a"]), [[0.5, 0.5], [1, 0]])
    assert t2.dim == 2 and len(t2) == 3
    with pytest.raises(LabelError, match="no embedding for 'zz'"):
        t2.get(["zz"])
    with pytest.raises(LabelError):
        t2.append(["d"], np.zeros((1, 3), np.float32))
    with pytest.raises(LabelError, match="non-finite"):
        t2.append(["d"], np.array([[np.nan, 0]], np.float32))


def test_embedding_table_survives_a_kill_between_shard_and_index(tmp_path):
    t = EmbeddingTable(tmp_path / "t")
    t.append(["a"], np.ones((1, 2), np.float32))
    # simulate a crash after a shard was written but before the index named it
    atomic_write_npz(tmp_path / "t" / "shard-000002-deadbeef.npz", ids=np.array(["b"]), vectors=np.ones((1, 2), np.float32))
    t2 = EmbeddingTable(tmp_path / "t")
    assert t2.missing(["a", "b"]) == ["b"]  # the orphan is ignored, and overwritten on the next append
    t2.append(["b"], np.full((1, 2), 2.0, np.float32))
    np.testing.assert_allclose(EmbeddingTable(tmp_path / "t").get(["b"]), [[2.0, 2.0]])


def test_corrupt_index_is_reported_with_fix(tmp_path, caplog):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(LabelError, match="index.json.*Run `vlmhub label --force m`"):  # a label: names the rebuild
        EmbeddingTable(tmp_path / "t", rebuild="vlmhub label --force m").ids()
    with caplog.at_level("WARNING", logger="vlmhub.storage"):  # a cache heals: warns, then is empty
        assert EmbeddingTable(tmp_path / "t").ids() == set()
    assert "index.json" in caplog.text


def test_two_writers_on_one_table_do_not_clobber_each_other(tmp_path):
    a, b = EmbeddingTable(tmp_path / "t"), EmbeddingTable(tmp_path / "t")
    a.append(["x"], np.ones((1, 2), np.float32))
    b.append(["y"], np.zeros((1, 2), np.float32))  # b's view was stale; it must not overwrite a's shard
    a.append(["z"], np.full((1, 2), 3.0, np.float32))
    t = EmbeddingTable(tmp_path / "t")
    np.testing.assert_allclose(t.get(["x", "y", "z"]), [[1, 1], [0, 0], [3, 3]])
