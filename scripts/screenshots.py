"""Screenshots of every web page with headless chromium into docs/img/ (web-*.png).

    PYTHONPATH=src python scripts/screenshots.py              # the toy web hub, labeled in a temp folder
    PYTHONPATH=src python scripts/screenshots.py --home DIR   # an already labeled hub home
    PYTHONPATH=src python scripts/screenshots.py --width 375  # phone width (files web-*-375.png)

Starts the app (uvicorn, 127.0.0.1, free port), opens each page in chromium (selenium, /usr/bin/chromium and
/usr/bin/chromedriver), grows the window to the page height and saves a PNG.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # webhome: the toy web hub and the live-server helper


def pages(model_ids: list[str], classes: str) -> list[tuple[str, str]]:
    from urllib.parse import urlencode

    a, b = model_ids[0], model_ids[min(1, len(model_ids) - 1)]
    q = urlencode({"classes": classes, "name": "demo", "domain": "color swatch", "k": 2})
    return [("catalog", "/"), ("model", f"/models/{a}"), ("compare", "/compare?ids=" + ",".join(model_ids[:3])),
            ("task", "/task?" + q), ("predict", "/predict?" + q), ("error", "/task?classes=red%0Ablue&k=99"),
            ("notfound", "/models/no-such-model"), ("signin", "/signin")] + ([("model-b", f"/models/{b}")] if b != a else [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="a labeled hub home (default: build the toy web hub in a temp folder)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--classes", default="red\ngreen\nblue\npurple", help="class names of the task page, one per line")
    args = ap.parse_args(argv)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    import webhome
    from vlmhub.service.app import create_app

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vlmhub-shots-") as tmp:
        svc = webhome.demo_service(args.home, Path(tmp))
        ids = [m["id"] for m in svc.models()["models"] if m["labeled"]] or [m["id"] for m in svc.models()["models"]]
        opts = webdriver.ChromeOptions()
        opts.binary_location = args.chromium
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={args.width},900"):
            opts.add_argument(a)
        drv = webdriver.Chrome(service=Service(args.chromedriver), options=opts)
        try:
            with webhome.LiveServer(create_app(svc)) as url:
                for name, path in pages(ids, args.classes):
                    drv.set_window_size(args.width, 900)
                    drv.get(url + path)
                    height = drv.execute_script("return document.documentElement.scrollHeight")
                    drv.set_window_size(args.width, min(int(height) + 20, 4000))
                    suffix = "" if args.width == 1100 else f"-{args.width}"
                    target = out / f"web-{name}{suffix}.png"
                    drv.save_screenshot(str(target))
                    print(f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}  {url}{path}")
        finally:
            drv.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
