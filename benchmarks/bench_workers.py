"""Several `vlmhub worker` processes labeling submitted models on one database while clients load the live service.

Run:  python benchmarks/bench_workers.py [--workers 2] [--models 4] [--clients 16] [--nodes-per-shard 1]
                                         [--database-url postgresql+psycopg://...]
      python benchmarks/bench_workers.py --smoke   # 2 workers, 4 models, 4 clients, 3 nodes a shard (a test runs it)
      python benchmarks/bench_workers.py --ray-workers 2   # the workers label on a local Ray cluster, 2 actors each

What it does, on a throw-away toy colour hub (three toy models labeled on synthetic swatches; WordNet graph):

1. starts the service (uvicorn in a child process, the home's hub with every model tag, as `vlmhub serve`),
2. submits ``--models`` tiny real transformers CLIPs (random weights, one seed each; tests/tiny_clip.py) over
   HTTP with a submitter token,
3. starts ``--workers`` real ``vlmhub worker`` processes on the shared database (SQLite in the home, or
   ``--database-url`` / ``$VLMHUB_DATABASE_URL``) while ``--clients`` threads send mixed requests (health,
   catalog, hub models, select of a repeated task, submission status) until the workers have checked, labeled
   and published every model and exited (idle),
4. checks that no job was lost or duplicated: every label job ``done`` after exactly one attempt, one job per
   shard, one artifact row per job (all checksums verified, no orphans), each shard labeled once in the
   workers' logs, each model checked and published once, every submission ``ready`` over HTTP,
5. labels the same packages again in a second home with one worker (in its own process, no Ray) and checks
   that every shard artifact and every published label array is byte-identical.

With ``--ray-workers N`` a Ray head is started for the run (``ray start --head`` on 127.0.0.1, 2 CPUs) and
every worker runs ``vlmhub worker --ray ADDRESS --ray-workers N``: the shards are embedded by Ray actors
(vlmhub.submission.ray_worker); the checks are the same.

Prints: jobs (and per worker), wall time from the workers' start to all published, the load during labeling
(requests, req/s, p50/p95 overall and per route, errors). Exits 1 if a check of step 4 or 5 fails; timings are
never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_toy_hub, pin_threads, thread_report, wait_until_healthy  # noqa: E402

TASK = {"name": "colours", "classes": ["red", "orange", "yellow", "green", "blue", "purple"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2, help="`vlmhub worker` processes (default 2)")
    ap.add_argument("--models", type=int, default=4, help="tiny CLIP packages submitted (default 4)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent load clients (default 16)")
    ap.add_argument("--nodes-per-shard", type=int, default=1, help="graph nodes per label job (default 1)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of the server")
    ap.add_argument("--database-url", default=os.environ.get("VLMHUB_DATABASE_URL"),
                    help="shared database (default: $VLMHUB_DATABASE_URL, else SQLite in the hub home)")
    ap.add_argument("--ray-workers", type=int, default=0, metavar="N",
                    help="label on a local Ray cluster started for the run, N actors per worker (default 0: no Ray)")
    ap.add_argument("--smoke", action="store_true", help="4 clients, 3 nodes a shard (about a minute)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.clients, args.nodes_per_shard = 4, 3
    pin_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-workers-"))
    try:
        return run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- pieces -----------------------------------------------------------------------------------------------------
def _packages(tmp: Path, n: int) -> dict[str, bytes]:
    """model id -> package bytes of ``n`` tiny random CLIPs (seeds 1..n)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_clip import build_tiny_clip, save_clip

    from vlmhub.submission import pack_folder

    out = {}
    for i in range(1, n + 1):
        out[f"tiny-{i}"] = pack_folder(save_clip(*build_tiny_clip(seed=i), tmp / "packages" / f"tiny-{i}"))
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_child(home: str, database_url, port: int, threads: int) -> None:
    """Child process: the service on ``home`` (every model of the hub, new ones as they become ready)."""
    import uvicorn

    from _common import pin_threads as _pin
    from vlmhub.hub import Hub
    from vlmhub.service import VlmhubService
    from vlmhub.service.app import create_app
    from vlmhub.settings import Settings

    _pin(threads)
    # the load's clients all come from 127.0.0.1 and share one token: the per-client rate limit is off
    settings = Settings(home=Path(home), data_dir=None, database_url=database_url, rate_limit=0)
    hub = Hub(settings, tags=("test", "user"))
    uvicorn.run(create_app(VlmhubService(hub, embedder="hashing256"), preload=True), host="127.0.0.1", port=port,
                log_level="warning")


def _worker_env(settings, database_url) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"VLMHUB_HOME": str(settings.home), "VLMHUB_WORDNET": str(settings.wordnet_dir), "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
                "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    env.pop("VLMHUB_DATA", None)
    if database_url:
        env["VLMHUB_DATABASE_URL"] = database_url
    else:
        env.pop("VLMHUB_DATABASE_URL", None)
    return env


def _start_workers(settings, database_url, n: int, nodes_per_shard: int, logs: Path, ray: tuple[str, int, str] | None = None
                   ) -> list[tuple[str, subprocess.Popen, Path]]:
    """``n`` real ``vlmhub worker`` processes (exit when idle), each logging its steps to ``logs/<name>.log``;
    ``ray`` = (address, actors per worker, auth token) sends their shards to that Ray cluster, else none uses Ray."""
    logs.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(1, n + 1):
        name, log = f"w{i}", logs / f"w{i}.log"
        fh = open(log, "w")
        argv = [sys.executable, "-m", "vlmhub.cli.main", "worker", "--name", name, "--no-zero-shot-check",
                "--nodes-per-shard", str(nodes_per_shard), "--check-seconds", "300"]
        env = _worker_env(settings, database_url)
        if ray:
            argv += ["--ray", ray[0], "--ray-workers", str(ray[1])]
            env.update(_ray_env(ray[2]))
        else:
            argv += ["--no-ray"]
        p = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)
        fh.close()
        out.append((name, p, log))
    return out


def _wait_workers(workers, timeout: float = 1800) -> list[str]:
    """Wait for every worker; returns problems (a non-zero exit, with its log's tail)."""
    problems = []
    deadline = time.time() + timeout
    for name, p, log in workers:
        try:
            rc = p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        if rc != 0:
            problems.append(f"worker {name} exited {rc}:\n{log.read_text()[-2000:]}")
    return problems


def _steps(log: Path) -> list[tuple[str, str, str]]:
    """(kind, model id, detail) of each step line a worker printed (``vlmhub worker``'s log format). A Ray label
    step (``shards 3,4 on Ray (2 actors): 2 done``) that finished all its shards counts as one line per shard."""
    out = []
    for line in log.read_text().splitlines():
        parts = line.split(None, 2)
        if parts and parts[0] in {"checked", "rejected", "labeled", "published", "lost"} and len(parts) >= 2:
            detail = parts[2] if len(parts) > 2 else ""
            if parts[0] == "labeled" and detail.startswith("shards ") and " on Ray " in detail:
                listed = detail.split()[1].split(",")
                if detail.endswith(f": {len(listed)} done"):
                    out += [("labeled", parts[1], f"shard {n}") for n in listed]
                    continue
            out.append((parts[0], parts[1], detail))
    return out


def _ray_env(token: str) -> dict[str, str]:
    """Token authentication for the run's cluster (RAY_AUTH_MODE=token): the head and every client share it."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}


def _start_ray_head(tmp: Path, token: str) -> tuple[str, subprocess.Popen]:
    """``ray start --head --block`` on 127.0.0.1 with 2 CPUs, its own temp dir and token (no other Ray on the
    machine is touched); returns its address once its port answers, and the process (terminating it stops the
    cluster)."""
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        raise SystemExit(f"--ray-workers needs Ray: {ray_cli} is missing (pip install 'vlmhub[ray]')")
    port = _free_port()
    # Ray's sockets live in its temp dir: an AF_UNIX path must stay under 108 bytes, so not under a deep TMPDIR
    temp = tempfile.mkdtemp(prefix="ray-", dir=os.environ.get("RAY_TMPDIR") or "/tmp")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", temp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **_ray_env(token)})
    deadline = time.time() + 120
    while time.time() < deadline:
        if head.poll() is not None:
            raise SystemExit(f"`ray start --head` exited {head.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        head.kill()
        shutil.rmtree(temp, ignore_errors=True)
        raise SystemExit("the Ray head did not start within 120 s")
    head.temp_dir = temp  # removed by _stop
    return f"127.0.0.1:{port}", head


def _stop(head: subprocess.Popen | None) -> None:
    if head is None:
        return
    head.terminate()
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.kill()
        head.wait()
    shutil.rmtree(head.temp_dir, ignore_errors=True)


def _db_state(settings) -> dict:
    """Jobs and artifacts per model from the hub database, and the artifact check."""
    from sqlalchemy import select

    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.artifacts import check_artifacts
    from vlmhub.hubdb.jobs import list_jobs
    from vlmhub.hubdb.schema import LabelArtifactRow

    with HubDB(settings) as db:
        jobs = list_jobs(db)
        with db.session() as s:
            arts = {r.id: (r.model_id, r.sha256) for r in s.scalars(select(LabelArtifactRow))}
        check = check_artifacts(db)
    return {"jobs": jobs, "artifacts": arts, "check": check}


def _labels(settings, model_ids) -> tuple[dict[str, bytes], str]:
    """(model id -> the published label's image rows and caption rows in graph order as bytes, graph version)."""
    from vlmhub.concepts.graph import current_graph
    from vlmhub.labeling.labels import LabelStore, caption_key

    graph = current_graph(settings)
    store = LabelStore(settings)
    out = {}
    for mid in model_ids:
        lab = store.label(mid)
        out[mid] = (lab.images.get(graph.image_ids()).tobytes()
                    + lab.captions.get([caption_key(n.caption) for n in graph.nodes]).tobytes())
    return out, graph.version


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


# -- the run ----------------------------------------------------------------------------------------------------
def run(args, tmp: Path) -> int:
    import multiprocessing as mp
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.auth import create_token

    print(thread_report())
    url = args.database_url
    backend = url.split(":", 1)[0] if url else "sqlite"
    hub, _task = make_toy_hub(tmp / "multi")
    settings = hub.settings.with_(database_url=url)
    packages = _packages(tmp, args.models)
    with HubDB(settings) as db:
        token = create_token(db, "bench", "submitter").token
    auth = {"Authorization": f"Bearer {token}"}

    port = _free_port()
    server = mp.get_context("spawn").Process(target=_serve_child, daemon=True,
                                             args=(str(settings.home), url, port, args.threads))
    server.start()
    base = f"http://127.0.0.1:{port}"
    problems: list[str] = []
    head = None
    try:
        wait_until_healthy(base, server)

        subs = {}
        with httpx.Client(base_url=base, timeout=600) as c:
            for mid, data in packages.items():
                r = c.post("/v1/submissions", files={"package": (f"{mid}.zip", data, "application/zip")},
                           data={"model_id": mid}, headers=auth)
                if r.status_code != 201:
                    raise SystemExit(f"submitting {mid} answered {r.status_code}: {r.text}")
                subs[mid] = r.json()["id"]

        routes = {
            "GET /v1/health": lambda c, i: c.get("/v1/health"),
            "GET /v1/models": lambda c, i: c.get("/v1/models"),
            "GET /v1/hub/models": lambda c, i: c.get("/v1/hub/models"),
            "POST /v1/select (repeated task)": lambda c, i: c.post("/v1/select", json={"task": TASK, "k": 3}),
            "GET /v1/submissions/{id}": lambda c, i: c.get(f"/v1/submissions/{list(subs.values())[i % len(subs)]}",
                                                           headers=auth),
        }
        names = list(routes)
        stop = threading.Event()

        def client(i: int) -> list[tuple[str, float, float, bool]]:
            out = []
            with httpx.Client(base_url=base, timeout=600) as c:
                for j in itertools.count():
                    if stop.is_set():
                        break
                    name = names[(i + j) % len(names)]
                    t = time.perf_counter()
                    try:
                        ok = routes[name](c, j).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    out.append((name, t, time.perf_counter() - t, ok))
            return out

        ray = None
        if args.ray_workers:
            import secrets

            token = secrets.token_hex(32)
            address, head = _start_ray_head(tmp, token)
            ray = (address, args.ray_workers, token)
        with ThreadPoolExecutor(args.clients) as ex:
            futures = [ex.submit(client, i) for i in range(args.clients)]
            t_start = time.perf_counter()
            workers = _start_workers(settings, url, args.workers, args.nodes_per_shard, tmp / "logs", ray)
            problems += _wait_workers(workers)
            t_end = time.perf_counter()
            stop.set()
            results = [r for f in futures for r in f.result()]
        with httpx.Client(base_url=base, timeout=600) as c:
            views = {mid: c.get(f"/v1/submissions/{sid}", headers=auth).json() for mid, sid in subs.items()}
    finally:
        server.terminate()
        server.join(timeout=10)
        _stop(head)

    if problems:  # a worker failed: its log says why, and the checks below would only fail after it
        print("\nFAILED:\n  " + "\n  ".join(problems))
        return 1

    # -- no lost or duplicated job ---------------------------------------------------------------------------
    state = _db_state(settings)
    jobs = [j for j in state["jobs"] if j.model_id in packages]
    steps = {name: _steps(log) for name, _p, log in workers}
    labeled = Counter((m, d.split(" failed")[0]) for w in steps.values() for k, m, d in w if k == "labeled")
    checked = Counter(m for w in steps.values() for k, m, _ in w if k == "checked")
    published = Counter(m for w in steps.values() for k, m, _ in w if k == "published")
    by_model = defaultdict(list)
    for j in jobs:
        by_model[j.model_id].append(j)
    n_shards = {m: len(js) for m, js in by_model.items()}
    for mid in packages:
        js = by_model.get(mid, [])
        if not js:
            problems.append(f"{mid}: no label jobs")
            continue
        shards = sorted(j.shard for j in js)
        if shards != list(range(len(js))):
            problems.append(f"{mid}: shards {shards} (want 0..{len(js) - 1}, each once)")
        for j in js:
            if j.status.value != "done" or j.attempts != 1 or j.artifact_id is None:
                problems.append(f"{mid} shard {j.shard}: status {j.status.value}, attempts {j.attempts}, "
                                f"artifact {j.artifact_id} (want done after 1 attempt)")
        arts = [a for a, (m, _sha) in state["artifacts"].items() if m == mid]
        if len(arts) != len(js):
            problems.append(f"{mid}: {len(arts)} artifact rows for {len(js)} jobs")
        if checked[mid] != 1 or published[mid] != 1:
            problems.append(f"{mid}: checked {checked[mid]} times, published {published[mid]} times (want once each)")
        view = views[mid]
        if view["model"]["state"] != "ready" or view["labeling"]["fraction"] != 1.0:
            problems.append(f"{mid}: the service reports {view['model']['state']}, {view['labeling']['fraction']} labeled")
    want_labeled = Counter((j.model_id, f"shard {j.shard}") for j in jobs)
    if labeled != want_labeled:
        dup = [k for k, v in labeled.items() if v > 1]
        miss = [k for k in want_labeled if k not in labeled]
        problems.append(f"workers' logs: shards labeled twice {dup[:5]}, never {miss[:5]}")
    if not state["check"].ok:
        problems.append(f"vlmhub db check: {state['check'].to_dict()}")

    # -- the same packages, one worker: byte-identical labels ---------------------------------------------------
    ref_hub, _ = make_toy_hub(tmp / "single")
    ref = ref_hub.settings.with_(database_url=None)
    from vlmhub.hubdb.auth import authenticate
    from vlmhub.submission.workflow import submit

    with HubDB(ref) as db:
        who = authenticate(db, create_token(db, "bench", "submitter").token)
        for mid, data in packages.items():
            submit(db, ref, who, data, model_id=mid)
    t_ref = time.perf_counter()
    ref_workers = _start_workers(ref, None, 1, args.nodes_per_shard, tmp / "ref-logs")
    problems += _wait_workers(ref_workers)
    t_ref = time.perf_counter() - t_ref
    ref_state = _db_state(ref)
    sha = lambda st: {(j.model_id, j.shard): st["artifacts"].get(j.artifact_id, (None, None))[1]  # noqa: E731
                      for j in st["jobs"] if j.model_id in packages}
    multi_sha, single_sha = sha(state), sha(ref_state)
    if multi_sha != single_sha:
        diff = sorted(k for k in set(multi_sha) | set(single_sha) if multi_sha.get(k) != single_sha.get(k))
        problems.append(f"shard artifacts differ from the single-worker run: {diff[:5]}")
    (multi_labels, v1), (single_labels, v2) = _labels(settings, packages), _labels(ref, packages)
    if v1 != v2 or multi_labels != single_labels:
        problems.append(f"published labels differ from the single-worker run (graph {v1} vs {v2}): "
                        f"{[m for m in packages if multi_labels.get(m) != single_labels.get(m)]}")

    # -- figures ------------------------------------------------------------------------------------------------
    wall = t_end - t_start
    per_worker = ", ".join(f"{name} {sum(1 for k, *_ in steps[name] if k == 'labeled')}" for name, *_ in workers)
    on_ray = f", on Ray ({args.ray_workers} actors per worker)" if args.ray_workers else ""
    print(f"\n{args.workers} `vlmhub worker` processes{on_ray}, {args.models} submitted tiny CLIPs, backend {backend}, "
          f"graph {v1}, {args.nodes_per_shard} nodes a shard")
    print(f"jobs: {len(jobs)} label jobs ({args.models} models x {sorted(set(n_shards.values()))} shards), "
          f"{sum(j.status.value == 'done' for j in jobs)} done, attempts {sorted(Counter(j.attempts for j in jobs).items())}, "
          f"labeled per worker: {per_worker}")
    print(f"time: workers started -> all {args.models} models checked, labeled, published: {wall:.1f} s "
          f"(one worker, same packages: {t_ref:.1f} s)")
    during = [r for r in results if t_start <= r[1] <= t_end]
    errors = sum(not ok for *_, ok in during)
    lat = [dt * 1000 for _n, _t, dt, _ok in during]
    print(f"load during labeling: {args.clients} clients, {len(during)} requests in {wall:.1f} s: "
          f"{len(during) / wall:.1f} req/s, p50 {_pct(lat, 50):.1f} ms, p95 {_pct(lat, 95):.1f} ms, {errors} errors")
    print("\n| route | n | errors | p50 ms | p95 ms |\n|---|---|---|---|---|")
    for name in names:
        xs = [dt * 1000 for n, _t, dt, _ok in during if n == name]
        errs = sum(not ok for n, _t, _dt, ok in during if n == name)
        print(f"| {name} | {len(xs)} | {errs} | {_pct(xs, 50):.1f} | {_pct(xs, 95):.1f} |")
    if errors:
        problems.append(f"{errors} requests failed during labeling")
    print(f"\nlabels: {len(multi_sha)} shard artifacts and {len(multi_labels)} published labels "
          f"{'byte-identical' if multi_sha == single_sha and multi_labels == single_labels else 'DIFFERENT'} "
          "to the single-worker run")
    if problems:
        print("\nFAILED:\n  " + "\n  ".join(problems))
        return 1
    print("no lost or duplicated job: ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
