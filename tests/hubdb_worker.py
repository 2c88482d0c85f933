"""A label-worker process for the kill tests (``python tests/hubdb_worker.py HOME URL WORKER_ID LOG LEASE_S DELAY``).

It claims label jobs from the hub database with :func:`vlmhub.hubdb.jobs.run_worker` and computes each shard with
a real toy model (:mod:`vlmhub.models.toy`, numpy only): the model's image embedding of one colour per node and
its text embedding of one caption per node, both derived from the node id alone, so a shard's result depends only
on the job (model, nodes) and any worker computing it again gets the same bytes. Before computing, it appends
``<job id> <attempt>`` to LOG (flushed), so a SIGKILL leaves every claim on record.
"""

from __future__ import annotations

import hashlib
import sys
import time

import numpy as np


def toy_shard(model_id: str, nodes) -> np.ndarray:
    """The shard's label rows for ``model_id`` (one of the toy models): ``[image embedding | caption embedding]``."""
    from vlmhub.models.toy import COLORS, TOY_MODELS, ToyColorModel

    spec = next(s for s in TOY_MODELS if s.id == model_id)
    model = ToyColorModel(spec)
    digests = [hashlib.sha256(n.encode("utf-8")).digest() for n in nodes]
    rgb = np.array([[d[0] / 255, d[1] / 255, d[2] / 255] for d in digests], dtype=np.float32)
    captions = [f"a {COLORS[d[3] % len(COLORS)]} {n}" for d, n in zip(digests, nodes)]
    return np.concatenate([model.project_image(rgb), model.encode_text(captions)], axis=1).astype(np.float32)


def main(argv: list[str]) -> None:
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.jobs import run_worker
    from vlmhub.settings import Settings

    home, url, worker_id, log, lease_s, delay = argv[0], argv[1] or None, argv[2], argv[3], float(argv[4]), float(argv[5])

    def compute(lease):
        with open(log, "a") as fh:
            fh.write(f"{lease.job_id} {lease.attempt}\n")
        time.sleep(delay)
        return toy_shard(lease.model_id, lease.nodes)

    with HubDB(Settings(home=home, database_url=url)) as db:
        run_worker(db, worker_id, compute, lease_s=lease_s, heartbeat_s=lease_s / 4, poll_s=0.05)


if __name__ == "__main__":
    main(sys.argv[1:])
