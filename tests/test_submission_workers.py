"""Two real `vlmhub worker` processes label four submitted tiny CLIPs on a shared PostgreSQL database while
clients load the live service: no job is lost or duplicated, and the labels are byte-identical to a single-worker
run. The SQLite variant is the smoke run of benchmarks/bench_workers.py (tests/test_benchmarks_smoke.py);
this runs the same script on PostgreSQL (``FOR UPDATE SKIP LOCKED`` claims) and checks its verdict, not its
timings."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~2-3 min: 8 sandboxed checks and 40 label jobs with a server under load

ROOT = Path(__file__).resolve().parents[1]


def test_two_workers_four_models_on_postgresql(pg_cluster, tmp_path, wordnet_dir):
    name = "t_" + uuid.uuid4().hex[:16]
    with pg_cluster.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = dict(os.environ)
    env.update({"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "VLMHUB_HOME": str(tmp_path / "home"), "VLMHUB_WORDNET": str(wordnet_dir), "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})
    env.pop("VLMHUB_DATABASE_URL", None)
    try:
        p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_workers.py"), "--smoke",
                            "--database-url", pg_cluster.url(name)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=1200)
    finally:
        with pg_cluster.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    out = p.stdout
    assert p.returncode == 0, f"bench_workers.py exited {p.returncode}\n{out[-3000:]}\n{p.stderr[-3000:]}"
    assert "backend postgresql" in out, out
    assert "no lost or duplicated job: ok" in out.splitlines(), out
    assert "4 published labels byte-identical to the single-worker run" in out, out
