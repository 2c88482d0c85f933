"""The web pages in a real browser: headless chromium (selenium) against a live uvicorn server on 127.0.0.1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _browser_paths() -> tuple[str, str] | None:
    chromium = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium") or shutil.which("chromium-browser")
    driver = str(CHROMEDRIVER) if CHROMEDRIVER.is_file() else shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def server(tmp_path_factory, wordnet_dir):
    """A live server (uvicorn in a thread, random free port) over a labeled toy hub in a temp home."""
    pytest.importorskip("uvicorn", reason="the service extra (pip install 'vlmhub[service]') is part of vlmhub[test]")
    import webhome
    from vlmhub.service import VlmhubService
    from vlmhub.service.app import create_app
    from vlmhub.settings import Settings, default_data_dir

    root = tmp_path_factory.mktemp("web-browser")
    settings = Settings(home=root / "hub", data_dir=default_data_dir(), wordnet_dir=wordnet_dir, batch_size=16)
    hub = webhome.build_hub(settings, root)
    with webhome.LiveServer(create_app(VlmhubService(hub, embedder="hashing256"))) as url:
        yield {"url": url, "hub": hub, "root": root}


@pytest.fixture(scope="module")
def browser():
    paths = _browser_paths()
    if paths is None:
        print("SKIP reason: chromium or chromedriver not found (install Debian's chromium and chromium-driver)")
        pytest.skip("chromium or chromedriver not found (install Debian's chromium and chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(paths[1]), options=opts)
    drv.set_page_load_timeout(120)
    yield drv
    drv.quit()


def _css(drv, sel):
    from selenium.webdriver.common.by import By

    return drv.find_elements(By.CSS_SELECTOR, sel)


def _click_and_wait(drv, button, timeout=120):
    """Click a submit button or a link and wait until the browser has left the page and loaded the answer.

    A click returns before a POST (a file upload above all) has navigated; reading the page right after it can
    read the old page. Waiting for the old <html> to go stale, then for the new one to finish loading, cannot.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    old = drv.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(drv, timeout).until(EC.staleness_of(old))
    WebDriverWait(drv, timeout).until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_catalog_lists_the_toy_models_and_searches(server, browser):
    browser.get(server["url"] + "/")
    assert browser.title.startswith("Models")
    assert [r.get_attribute("data-id") for r in _css(browser, "tr.model")] == ["toy-a", "toy-b", "toy-c"]
    box = _css(browser, "input#q")[0]
    box.send_keys("blue")
    _click_and_wait(browser, _css(browser, "form.filters button")[0])
    assert [r.get_attribute("data-id") for r in _css(browser, "tr.model")] == ["toy-a"]
    assert "q=blue" in browser.current_url


def test_model_page_chart_has_one_axis_per_category(server, browser):
    from vlmhub.evaluation.profile import hub_profiles

    browser.get(server["url"] + "/")
    _click_and_wait(browser, _css(browser, 'tr.model[data-id="toy-b"] a')[0])
    assert browser.current_url.endswith("/models/toy-b")
    charts = _css(browser, "svg.radar")
    assert len(charts) == 1 and charts[0].is_displayed()
    axes = [a.get_attribute("data-axis") for a in _css(browser, "svg.radar g.axis")]
    assert axes == list(hub_profiles(server["hub"]).categories) and len(axes) == 6
    assert charts[0].get_attribute("aria-label").startswith("toy-b: label accuracy per WordNet category")


def test_task_form_shows_per_class_choices(server, browser):
    browser.get(server["url"] + "/task")
    _css(browser, "textarea#classes")[0].send_keys("red\ngreen\nblue")
    _css(browser, "input#domain")[0].send_keys("color swatch")
    k = _css(browser, "input#k")[0]
    k.clear()
    k.send_keys("2")
    _click_and_wait(browser, _css(browser, "form.task-form button")[0])
    rows = _css(browser, "tr.class-row")
    assert [r.get_attribute("data-class") for r in rows] == ["red", "green", "blue"]
    for r in rows:
        picks = r.find_elements("css selector", "ol.picks li")
        assert len(picks) == 2 and all(p.get_attribute("data-model").startswith("toy-") for p in picks)
    assert len(_css(browser, "svg.heatmap rect.cell")) == 9
    shared = browser.current_url  # the URL holds the task: reopening it gives the same page
    browser.get(shared)
    assert [r.get_attribute("data-class") for r in _css(browser, "tr.class-row")] == ["red", "green", "blue"]


def test_upload_a_task_json_file_and_see_per_class_choices(server, browser):
    import json

    good = server["root"] / "colors-task.json"
    good.write_text(json.dumps({"name": "colors", "classes": ["red", "blue", "green"], "domain": "color swatch"}))
    browser.get(server["url"] + "/task")
    _css(browser, "input#task_file")[0].send_keys(str(good))
    _click_and_wait(browser, _css(browser, "form.upload-task button")[0])
    assert [r.get_attribute("data-class") for r in _css(browser, "tr.class-row")] == ["red", "blue", "green"]
    assert "classes=red%0Ablue%0Agreen" in _css(browser, "a.share")[0].get_attribute("href")
    bad = server["root"] / "broken-task.json"
    bad.write_text('{"name": "colors", "classes": ["red", "blue"')
    browser.get(server["url"] + "/task")
    _css(browser, "input#task_file")[0].send_keys(str(bad))
    _click_and_wait(browser, _css(browser, "form.upload-task button")[0])
    alert = _css(browser, '[role="alert"]')
    assert alert and "not valid JSON" in alert[0].text and "a task file looks like" in alert[0].text
    assert browser.title.startswith("Error 400")


def test_upload_an_image_and_see_a_prediction(server, browser):
    import webhome

    img = webhome.swatch_png("blue", server["root"] / "upload-blue.png")
    browser.get(server["url"] + "/predict")
    _css(browser, "textarea#classes")[0].send_keys("red\ngreen\nblue")
    _css(browser, "input#images")[0].send_keys(str(img))
    _click_and_wait(browser, _css(browser, "form.task-form button")[0])
    rows = _css(browser, "tr.prediction")
    assert len(rows) == 1 and rows[0].get_attribute("data-image") == "upload-blue.png"
    assert rows[0].find_elements("css selector", "td.pred")[0].text == "blue"
    assert len(rows[0].find_elements("css selector", "ul.votes li")) >= 1


def test_a_bad_form_shows_the_error_and_the_fix(server, browser):
    browser.get(server["url"] + "/task")
    k = _css(browser, "input#k")[0]
    k.clear()
    k.send_keys("7")
    _css(browser, "textarea#classes")[0].send_keys("red\nblue")
    _click_and_wait(browser, _css(browser, "form.task-form button")[0])
    alert = _css(browser, '[role="alert"]')
    assert alert and "k must be from 1 to 3" in alert[0].text
    assert browser.title.startswith("Error 422")


def test_pages_fit_a_375_px_screen(server, browser):
    browser.set_window_size(375, 800)
    try:
        for path in ("/", "/models/toy-a", "/task?classes=red%0Ablue&k=2", "/predict"):
            browser.get(server["url"] + path)
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= 375, (path, width)
    finally:
        browser.set_window_size(1200, 900)


# -- submit: sign in with a token, upload a real tiny package, a real worker checks and labels it -------------------------


@pytest.fixture(scope="module")
def submit_server(tmp_path_factory, wordnet_dir):
    """A live server over a labeled toy hub that also serves whatever gets published (tags test + user), with
    its hub database the SQLite file in the home (so a worker thread shares it)."""
    pytest.importorskip("uvicorn", reason="the service extra (pip install 'vlmhub[service]') is part of vlmhub[test]")
    import webhome
    from vlmhub.hub import Hub
    from vlmhub.service import VlmhubService
    from vlmhub.service.app import create_app
    from vlmhub.settings import Settings, default_data_dir

    root = tmp_path_factory.mktemp("web-submit")
    settings = Settings(home=root / "hub", data_dir=default_data_dir(), wordnet_dir=wordnet_dir, batch_size=16,
                        database_url=None)
    webhome.build_hub(settings, root)
    hub = Hub(settings, tags=("test", "user"))
    with webhome.LiveServer(create_app(VlmhubService(hub, embedder="hashing256"))) as url:
        yield {"url": url, "settings": settings, "root": root}


def _package(tiny_clip_dir, dest, meta: dict) -> Path:
    """The tiny CLIP folder plus a vlmhub.json, zipped (a real package: safetensors weights, no code)."""
    import json

    from vlmhub.submission import pack_folder

    folder = dest.with_suffix("")
    shutil.copytree(tiny_clip_dir, folder)
    (folder / "vlmhub.json").write_text(json.dumps(meta))
    dest.write_bytes(pack_folder(folder))
    return dest


def _run_worker(settings, config):
    """`vlmhub worker`'s loop (vlmhub.submission.workflow.process) in a thread on the server's database and home."""
    import threading

    from vlmhub.hubdb import HubDB
    from vlmhub.submission.workflow import process

    box: dict = {}

    def run():
        try:
            with HubDB(settings) as db:
                box["steps"] = process(db, settings, "browser-worker", config=config)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def _state_after_reloads(drv, url, until: set[str], timeout_s: float = 600.0) -> str:
    """Reload the submission page until its state is one of ``until`` (bounded; the page also refreshes itself)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        drv.get(url)
        state = _css(drv, "strong.state")[0].get_attribute("data-state")
        if state in until or time.monotonic() > deadline:
            return state
        time.sleep(1.0)


def _upload(drv, base, package: Path, model_id: str) -> str:
    drv.get(base + "/submit")
    _css(drv, "input#package")[0].send_keys(str(package))
    _css(drv, "input#model_id")[0].send_keys(model_id)
    _click_and_wait(drv, _css(drv, "form.task-form button")[0])
    assert "/submissions/" in drv.current_url, drv.page_source[:2000]
    return drv.current_url


@pytest.mark.slow  # two sandboxed checks (a Python with torch each) and six label shards
def test_sign_in_submit_and_watch_the_worker_make_it_ready_or_reject_it(submit_server, browser, tiny_clip_dir):
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.auth import create_token
    from vlmhub.submission.sandbox import SandboxLimits
    from vlmhub.submission.workflow import WorkflowConfig

    base, settings, root = submit_server["url"], submit_server["settings"], submit_server["root"]
    with HubDB(settings) as db:
        token = create_token(db, "alice", "submitter").token

    browser.get(base + "/submit")
    assert browser.current_url.endswith("/signin")  # signing in comes first
    _css(browser, "input#token")[0].send_keys("vlmhub_not_a_token")
    _click_and_wait(browser, _css(browser, "form.task-form button")[0])
    assert _css(browser, '[role="alert"]'), "a bad token is refused with the fix"
    _css(browser, "input#token")[0].send_keys(token)
    _click_and_wait(browser, _css(browser, "form.task-form button")[0])
    assert browser.current_url.endswith("/submit") and _css(browser, "strong.who")[0].text == "alice"

    good = _package(tiny_clip_dir, root / "tiny-web.zip", {"licence": "MIT", "description": "tiny random CLIP"})
    page = _upload(browser, base, good, "tiny-web")
    assert _css(browser, "strong.state")[0].get_attribute("data-state") == "submitted"
    fast = WorkflowConfig(sandbox=SandboxLimits(seconds=300), zero_shot_check=False, nodes_per_shard=3)
    worker, box = _run_worker(settings, fast)
    state = _state_after_reloads(browser, page, {"ready", "rejected"})
    worker.join(600)
    assert "error" not in box, box.get("error")
    assert state == "ready", (state, [r.text for r in _css(browser, "ul.reasons li")])
    assert _css(browser, "progress#progress")[0].get_attribute("value") == _css(browser, "progress#progress")[0].get_attribute("max")
    assert [s.kind for s in box["steps"]][0] == "checked" and box["steps"][-1].kind == "published"
    _click_and_wait(browser, next(a for a in _css(browser, "main a") if a.text == "Open the model page"))
    assert browser.current_url.endswith("/models/tiny-web")
    browser.get(base + "/?source=hf")  # the catalog lists it: ready, its licence, fully labeled
    row = _css(browser, 'tr.model[data-id="tiny-web"]')
    assert row and row[0].get_attribute("data-state") == "ready"
    assert row[0].find_elements("css selector", "td.licence")[0].text == "MIT"
    assert row[0].find_elements("css selector", "td.coverage")[0].text == "100.0%"

    # the same weights under the zero-shot admission check: random weights fail it, the page shows the reasons
    bad = _package(tiny_clip_dir, root / "random-web.zip", {"licence": "MIT", "description": "random weights"})
    page = _upload(browser, base, bad, "random-web")
    strict = WorkflowConfig(sandbox=SandboxLimits(seconds=300), zero_shot_check=True, nodes_per_shard=3)
    worker, box = _run_worker(settings, strict)
    state = _state_after_reloads(browser, page, {"ready", "rejected"})
    worker.join(600)
    assert "error" not in box, box.get("error")
    reasons = [r.text for r in _css(browser, "ul.reasons li")]
    assert state == "rejected" and any("zero_shot" in r for r in reasons), (state, reasons)
    _click_and_wait(browser, next(a for a in _css(browser, "main a") if a.text == "All your submissions"))
    states = {r.find_elements("css selector", "td")[1].text: r.get_attribute("data-state")
              for r in _css(browser, "tr.submission")}
    assert states == {"tiny-web": "ready", "random-web": "rejected"}
