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
