"""HTTP service overhead: the same select / predict / rank calls in-process and through `vlmhub serve`.

Run:  python benchmarks/bench_service.py [--home HUB] [--target cifar10-test] [--n 16] [--repeats 5]
      python benchmarks/bench_service.py --smoke   # toy colour hub, synthetic table, 1 repeat (a test runs it)

Needs a labeled hub (``vlmhub label``; default ``$VLMHUB_HOME``) and the shared data. Starts a real uvicorn
server on a free local port in a thread and talks to it with one keep-alive httpx client. Prints, per call,
the best and median wall time in-process (``VlmhubService`` methods) and over HTTP, and their ratio; plus the
cold start (service construction + first select, which loads labels, MiniLM and WordNet). No assertions.
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
from _common import fmt_ms, make_toy_hub, pin_threads, rss_mb, synthetic_table, thread_report, timeit  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", help="labeled hub (default: $VLMHUB_HOME or ~/.cache/vlmhub)")
    ap.add_argument("--target", default="cifar10-test", help="shared target whose classes and images are used")
    ap.add_argument("--n", type=int, default=16, help="images per predict call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="toy colour hub, synthetic table, one repeat (seconds)")
    args = ap.parse_args(argv)
    pin_threads(args.threads)
    if not args.smoke:
        return run(args)
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-service-"))
    try:
        args.n, args.repeats = 6, 1
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
    svc = VlmhubService(hub, settings=settings, tables=tables, embedder=embedder)
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
    print(f"\npeak RSS {rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
