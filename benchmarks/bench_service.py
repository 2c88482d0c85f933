"""HTTP service overhead: the same select / predict / rank calls in-process and through `vlmhub serve`.

Run:  python benchmarks/bench_service.py [--home HUB] [--target cifar10-test] [--n 16] [--repeats 5]
      python benchmarks/bench_service.py --smoke   # toy colour hub, synthetic table, 1 repeat (a test runs it)

Needs a labeled hub (``vlmhub label``; default ``$VLMHUB_HOME``) and the shared data. Starts a real uvicorn
server on a free local port in a thread and talks to it with one keep-alive httpx client. Prints, per call,
the best and median wall time in-process (``VlmhubService`` methods) and over HTTP, and their ratio; plus the
cold start (service construction + first select, which loads labels, MiniLM and WordNet). No assertions.

Then a load test against a live uvicorn in a child process on 127.0.0.1 (so the clients do not share its
GIL): ``--clients`` (16) threads, each with its own keep-alive client, send ``--requests`` mixed requests
(health, catalog, select of a repeated task, select of a new task, predict of one small image); printed per
route: n, errors, p50 / p95 ms, then req/s and the server's RSS before/after. Before it, the first (new-task)
and second (repeated) selection of the 6-class task and of a synthetic 100-class task on the idle server. Then
health and catalog latency while the clients run only selections of new tasks (caption encoding is the heavy
part), and last all clients repeating selections (6 and 100 classes) mixed with health and catalog.
``--smoke`` builds a throw-away hub of the three toy colour models (labeled on synthetic swatches), ranks on
a synthetic 12 x 7 table with the hashing embedder, and repeats each call once: seconds, no data.
"""

from __future__ import annotations

import argparse
import base64
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ms, make_toy_hub, pin_threads, rss_mb, synthetic_table, thread_report, timeit, wait_until_healthy  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", help="labeled hub (default: $VLMHUB_HOME or ~/.cache/vlmhub)")
    ap.add_argument("--target", default="cifar10-test", help="shared target whose classes and images are used")
    ap.add_argument("--n", type=int, default=16, help="images per predict call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients of the load test")
    ap.add_argument("--requests", type=int, default=None,
                    help="mixed requests per client in the load test (default 1000; 10 with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="toy colour hub, synthetic table, one repeat (seconds)")
    args = ap.parse_args(argv)
    pin_threads(args.threads)
    if not args.smoke:
        args.requests = args.requests or 1000
        return run(args)
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-service-"))
    try:
        args.n, args.repeats, args.requests = 6, 1, args.requests or 10
        return run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path | None = None) -> int:
    """Time the calls on ``args.home`` (or, with ``tmp``, on a toy hub and a synthetic table written there)."""

    import httpx
    import uvicorn

    from vlmhub.service import VlmhubService
    from vlmhub.service.app import create_app
    from vlmhub.settings import Settings
    from vlmhub.tasks import load_task, task_images

    if tmp is not None:  # smoke
        from vlmhub.tables import save_generic_table

        hub, task_dir = make_toy_hub(tmp)
        settings, table, embedder = hub.settings, "smoke", "hashing256"
        csv_path, _ = save_generic_table(synthetic_table(), tmp / "smoke.csv")
        tables = {table: csv_path}
        task = load_task(task_dir)
    else:
        settings = Settings(home=Path(args.home)) if args.home else Settings()
        hub, table, embedder, tables = None, "openclip", "minilm", None
        task = load_task(settings.require_data_dir() / "images" / args.target)
    imgs = task_images(task, limit_per_class=max(1, args.n // len(task.classes) + 1)).paths[: args.n]
    uploads = [{"name": f"{p.parent.name}/{p.name}", "data": base64.b64encode(p.read_bytes()).decode()} for p in imgs]
    tdict = task.to_dict()
    print(thread_report())

    t0 = time.perf_counter()
    from vlmhub.service import ServiceLimits

    # repeated calls from one address: the per-client rate limit (VLMHUB_RATE_LIMIT) is off for the timings
    svc = VlmhubService(hub, settings=settings, tables=tables, embedder=embedder,
                        limits=ServiceLimits.from_settings(settings, rate_per_minute=0))
    svc.select(tdict, k=3)
    cold = time.perf_counter() - t0

    calls = {
        "select (k=3)": (lambda: svc.select(tdict, k=3), "/v1/select", {"task": tdict, "k": 3}),
        f"predict ({len(uploads)} images, k=3)": (lambda: svc.predict(tdict, uploads, k=3), "/v1/predict",
                                                   {"task": tdict, "k": 3, "images": uploads}),
        f"rank-models ({table}, vlmhub)": (lambda: svc.rank_models(table, tdict), f"/v1/tables/{table}/rank", {"task": tdict}),
    }
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    print(f"\ncold start (service + first select): {cold:.2f} s; hub {settings.home}; target {task.name}\n")
    print("| call | in-process best / median ms | HTTP best / median ms | HTTP / in-process (median) |\n|---|---|---|---|")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
        for name, (fn, path, body) in calls.items():
            b_in, m_in, _ = timeit(fn, repeats=args.repeats)

            def http():
                r = client.post(path, json=body)
                r.raise_for_status()
                return r

            b_h, m_h, _ = timeit(http, repeats=args.repeats)
            print(f"| {name} | {fmt_ms(b_in)} / {fmt_ms(m_in)} | {fmt_ms(b_h)} / {fmt_ms(m_h)} | {m_h / m_in:.2f} |")
    server.should_exit = True
    th.join(timeout=10)
    print(f"\npeak RSS {rss_mb():.0f} MB (in-process part)")
    load_test(args, settings, tables, embedder, hub.model_ids if hub is not None else None, tdict, uploads[:1])
    return 0


def _serve_child(home: str, data_dir, model_ids, tables, embedder: str, port: int, threads: int) -> None:
    """Child process: the service on ``home`` behind uvicorn (one worker, as ``vlmhub serve``)."""
    import uvicorn

    from _common import pin_threads as _pin
    from vlmhub.hub import Hub
    from vlmhub.service import VlmhubService
    from vlmhub.service.app import create_app
    from vlmhub.settings import Settings

    _pin(threads)
    # the load's 16 clients all come from 127.0.0.1, one anonymous address: the per-client rate limit is off
    settings = Settings(home=Path(home), data_dir=Path(data_dir) if data_dir else None, rate_limit=0)
    hub = Hub(settings, model_ids=model_ids)
    uvicorn.run(create_app(VlmhubService(hub, tables=tables, embedder=embedder), preload=True),
                host="127.0.0.1", port=port, log_level="warning")


def task_100() -> dict:
    """A synthetic 100-class task (colour x object names, e.g. "red car"): the targets' repeated selection."""
    colours = ["red", "orange", "yellow", "green", "blue", "purple", "black", "white", "brown", "grey"]
    objects = ["car", "cup", "chair", "bird", "flower", "shirt", "ball", "boat", "door", "lamp"]
    return {"name": "synthetic-100", "domain": "natural photograph", "task": "image classification",
            "classes": [f"{c} {o}" for c in colours for o in objects]}


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def _server_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def load_test(args, settings, tables, embedder, model_ids, tdict: dict, upload: list) -> None:
    """``args.clients`` concurrent clients x ``args.requests`` mixed requests against a live server."""
    import itertools
    import multiprocessing as mp
    from collections import defaultdict
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = mp.get_context("spawn").Process(target=_serve_child, daemon=True, args=(
        str(settings.home), str(settings.data_dir) if settings.data_dir else None, model_ids, tables, embedder, port,
        args.threads))
    proc.start()
    base = f"http://127.0.0.1:{port}"
    wait_until_healthy(base, proc)
    counter = itertools.count()

    def new_task() -> dict:  # a task no one asked before: its captions are encoded on this request
        n = next(counter)
        return {**tdict, "name": f"new-{n}", "classes": [f"{c} variant {n}" for c in tdict["classes"]]}

    t100 = task_100()
    routes = {
        "GET /v1/health": lambda c: c.get("/v1/health"),
        "GET /v1/models": lambda c: c.get("/v1/models"),
        "POST /v1/select (repeated task)": lambda c: c.post("/v1/select", json={"task": tdict, "k": 3}),
        "POST /v1/select (new task)": lambda c: c.post("/v1/select", json={"task": new_task(), "k": 3}),
        "POST /v1/predict (1 image)": lambda c: c.post("/v1/predict", json={"task": tdict, "k": 3, "images": upload}),
        "POST /v1/select (repeated, 100 classes)": lambda c: c.post("/v1/select", json={"task": t100, "k": 3}),
    }
    names = list(routes)
    # the first selection of each repeated task encodes its captions: a new task's cost, printed apart (one
    # client, idle server); afterwards its text embeddings are cached in the hub
    with httpx.Client(base_url=base, timeout=600) as c:
        for what, body in (("6-class task", {"task": tdict, "k": 3}), ("100-class task", {"task": t100, "k": 3})):
            t = time.perf_counter()
            r = c.post("/v1/select", json=body)
            first = time.perf_counter() - t
            r.raise_for_status()
            t = time.perf_counter()
            c.post("/v1/select", json=body).raise_for_status()
            print(f"new task, idle server: first select of the {what} {first * 1000:.0f} ms "
                  f"(then repeated {(time.perf_counter() - t) * 1000:.1f} ms; response {len(r.content)} bytes)")

    def client_run(i: int, plan, n: int | None = None) -> list[tuple[str, float, bool]]:
        out = []
        with httpx.Client(base_url=base, timeout=600) as c:
            for j in range(args.requests if n is None else n):
                name = plan(i, j)
                t = time.perf_counter()
                try:
                    ok = routes[name](c).status_code == 200
                except httpx.HTTPError:
                    ok = False
                out.append((name, time.perf_counter() - t, ok))
        return out

    def table(results, wall: float, title: str) -> None:
        by = defaultdict(list)
        errors = defaultdict(int)
        for name, dt, ok in results:
            by[name].append(dt * 1000)
            errors[name] += not ok
        print(f"\n{title}\n\n| route | n | errors | p50 ms | p95 ms |\n|---|---|---|---|---|")
        for name in names:
            if by.get(name):
                print(f"| {name} | {len(by[name])} | {errors[name]} | {_pct(by[name], 50):.1f} | {_pct(by[name], 95):.1f} |")
        print(f"\n{len(results)} requests in {wall:.1f} s: {len(results) / wall:.1f} req/s, "
              f"{sum(errors.values())} errors")

    rss0 = _server_rss_mb(proc.pid)
    try:
        with ThreadPoolExecutor(args.clients) as ex:
            t = time.perf_counter()
            mixed = [r for f in [ex.submit(client_run, i, lambda i, j: names[(i + j) % len(names)])
                                 for i in range(args.clients)] for r in f.result()]
            table(mixed, time.perf_counter() - t, f"load: {args.clients} clients x {args.requests} mixed requests, "
                  f"live server on 127.0.0.1 ({args.threads} CPU threads)")
            # light routes while the others run only new-task selections (the heavy, caption-encoding kind); the
            # busy clients send at most 50 each (each costs ~0.3 s of the 2-thread pool: 14 x 1,000 would take an
            # hour), which still outlasts the light clients' requests of a few ms each
            t = time.perf_counter()
            n_busy = min(args.requests, 50)
            busy = [ex.submit(client_run, i, lambda i, j: names[3], n_busy) for i in range(args.clients - 2)]
            light = [ex.submit(client_run, i, lambda i, j: names[i]) for i in (0, 1)]
            loaded = [r for f in busy + light for r in f.result()]
            table(loaded, time.perf_counter() - t, f"health and catalog while {args.clients - 2} clients select {n_busy} new tasks each")
            # the targets' case: every client repeats selections (6 and 100 classes) or reads health / catalog
            light_mix = [names[0], names[1], names[2], names[5]]
            t = time.perf_counter()
            rep = [r for f in [ex.submit(client_run, i, lambda i, j: light_mix[(i + j) % len(light_mix)])
                               for i in range(args.clients)] for r in f.result()]
            table(rep, time.perf_counter() - t, f"{args.clients} clients x {args.requests}: repeated selections "
                  "(6 and 100 classes), health and catalog")
        print(f"\nserver RSS before / after: {rss0:.0f} / {_server_rss_mb(proc.pid):.0f} MB")
    finally:
        proc.terminate()
        proc.join(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
