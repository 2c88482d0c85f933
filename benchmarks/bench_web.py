"""Web page weight and server time: bytes transferred and render time of every page over a live server.

Run:  python benchmarks/bench_web.py [--home HUB] [--repeats 5]     # a labeled hub home
      python benchmarks/bench_web.py --smoke                        # the toy web hub, labeled in a temp folder

Starts the app with uvicorn on 127.0.0.1 (free port), requests each page over one keep-alive httpx client and
prints per page: status, bytes of the HTML (plus the CSS once), the template render time the server reports
(``Server-Timing: render``), and the best and median wall time of the whole request (server work + local HTTP).
The first request of the profile pages and of the task page pays for loading labels and the text model
(printed as ``cold``). Goals of issue 13: each page <= 300 kB and <= 200 ms server-side (printed, not asserted).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))  # webhome: the toy web hub and the live-server helper
from _common import pin_threads, thread_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="a labeled hub home (default with --smoke: the toy web hub in a temp folder)")
    ap.add_argument("--smoke", action="store_true", help="toy hub, 2 repeats")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classes", default="red,green,blue,purple", help="comma-separated classes of the task page")
    args = ap.parse_args(argv)
    if not args.home and not args.smoke:
        ap.error("pass --home HUB (a labeled hub) or --smoke (the toy web hub)")
    pin_threads(args.threads)
    print(thread_report())
    repeats = 2 if args.smoke else args.repeats

    import httpx

    import webhome
    from vlmhub.service.app import create_app

    with tempfile.TemporaryDirectory(prefix="vlmhub-bench-web-") as tmp:
        svc = webhome.demo_service(args.home, Path(tmp))
        ids = [m["id"] for m in svc.models()["models"] if m["labeled"]] or [m["id"] for m in svc.models()["models"]]
        classes = "%0A".join(args.classes.split(","))
        pages = [("catalog", "/"), ("catalog search", "/?q=" + ids[0][:3] + "&sort=-params"),
                 ("model", f"/models/{ids[0]}"), ("compare", "/compare?ids=" + ",".join(ids[:3])),
                 ("task", f"/task?classes={classes}&k=2"), ("predict form", "/predict"),
                 ("404 model", "/models/no-such-model"), ("bad task", "/task?classes=a%0Ab&k=0")]
        print(f"hub: {len(svc.models()['models'])} models ({len(ids)} labeled), home {svc.hub.settings.home}")
        with webhome.LiveServer(create_app(svc)) as url, httpx.Client(base_url=url, timeout=300) as http:
            css = http.get("/static/web.css")
            print(f"css: {len(css.content)} bytes (once per visit, cached an hour)")
            print(f"{'page':<16} {'status':>6} {'bytes':>8} {'cold ms':>8} {'best ms':>8} {'median ms':>9} {'render ms':>9}")
            for name, path in pages:
                t0 = time.perf_counter()
                r = http.get(path)
                cold = 1000 * (time.perf_counter() - t0)
                walls, renders = [], []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    r = http.get(path)
                    walls.append(1000 * (time.perf_counter() - t0))
                    timing = r.headers.get("server-timing", "render;dur=nan")
                    renders.append(float(timing.split("dur=")[1]))
                print(f"{name:<16} {r.status_code:>6} {len(r.content):>8} {cold:>8.1f} {min(walls):>8.1f} "
                      f"{statistics.median(walls):>9.1f} {statistics.median(renders):>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
