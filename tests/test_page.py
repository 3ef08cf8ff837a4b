"""The verification page in a real browser: `kzlabel serve` started on loopback, Debian's chromium driven by selenium
through chromedriver, files uploaded through the page's own file input, and what the page shows read back.

One service and one browser serve the whole module. Chromium is a test dependency (scripts/setup.sh installs it, and
CI runs setup): a machine without it fails here, it does not skip. Screenshots go to $KZLABEL_TEST_ARTEFACTS when set,
else to a pytest temp folder; never into the repository.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

import kzlabel
from kzlabel import Signer, TrustStore
from kzlabel.server.page import CSP, load_assets
from kzlabel.watermark import embed_image

CHROMIUM = Path(os.environ.get("KZLABEL_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("KZLABEL_CHROMEDRIVER", "/usr/bin/chromedriver"))
# root on a closed network: no sandbox, no GPU, nothing that phones home
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2200",
]
WAIT_S = 30

VERDICT_WORDS = {
    "kk": {"compliant": "ЖИ жасаған деп белгіленген", "unlabelled": "ЖИ белгісі табылмады"},
    "ru": {"compliant": "Помечено как созданное ИИ", "unlabelled": "Метка ИИ не найдена"},
    "en": {"compliant": "Labelled as AI-generated", "unlabelled": "No AI label found"},
}


def _png(w: int, h: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.dstack([x * 255 // w, y * 255 // h, (x + y) % 256]).astype(np.int16)
    img = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("KZLABEL_TEST_ARTEFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("page-artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory, signer: Signer) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("page-samples")
    marked = kzlabel.mark(_png(560, 400, 1), signer=signer, system="GenModel 2", owner="ТОО Пример", name="x.png")
    out = {"marked": d / "marked.png", "plain": d / "plain.png", "junk": d / "junk.bin"}
    out["marked"].write_bytes(marked)
    out["plain"].write_bytes(_png(320, 240, 2))
    out["junk"].write_bytes(b"\x00\x01 not a format kzlabel knows " * 40)
    # marked twice with the same key: the pilot proves a mark, the colliding payloads read as neither
    twice = embed_image(embed_image(np.asarray(Image.open(io.BytesIO(_png(560, 400, 3)))), b"\x01" * 8), b"\xfe" * 8)
    out["overwritten"] = d / "overwritten.png"
    Image.fromarray(twice).save(out["overwritten"])
    return out


@pytest.fixture(scope="module")
def service(keydir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`kzlabel serve` on 127.0.0.1:<ephemeral>, as a user starts it; the URL it reports."""
    log = tmp_path_factory.mktemp("page-service") / "serve.log"
    cmd = [sys.executable, "-m", "kzlabel.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--trust", str(keydir)]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT_S
        while not (found := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())):
            assert proc.poll() is None, f"kzlabel serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"kzlabel serve did not start: {log.read_text()}"
            time.sleep(0.05)
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"the page tests need chromium and chromedriver (bash scripts/setup.sh installs them): {missing}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory(prefix="kzlabel-chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")
    # the browser's language list (navigator.languages, Accept-Language) puts Kazakh first
    options.add_experimental_option("prefs", {"intl.accept_languages": "kk-KZ,kk,ru,en"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


def _open(driver: WebDriver, url: str, *, forget_language: bool = True) -> None:
    driver.get(url + "/")
    if forget_language:
        driver.execute_script("localStorage.clear()")
        driver.refresh()
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))


def _upload(driver: WebDriver, path: Path) -> str:
    """Choose ``path`` in the page's file input; the verdict the page settles on (or "error")."""
    title = driver.find_element(By.ID, "verdict-title")
    driver.execute_script("arguments[0].removeAttribute('data-verdict')", title)
    driver.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(driver, WAIT_S).until(lambda d: title.get_attribute("data-verdict"))
    return str(title.get_attribute("data-verdict"))


def _text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def _expected(path: Path, trust: TrustStore) -> dict[str, Any]:
    return kzlabel.verify(path, trust=trust).to_dict()


def _rect(driver: WebDriver, element: WebElement) -> dict[str, float]:
    return dict(driver.execute_script("return arguments[0].getBoundingClientRect().toJSON()", element))


# --- the service side: what the browser is given ---------------------------------------------------------------------


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_page_files_have_their_types_and_a_strict_csp(service: str) -> None:
    status, headers, body = _get(service + "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"] == CSP and headers["x-content-type-options"] == "nosniff"
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP and "script-src 'self'" in CSP
    html = body.decode()
    # no inline script or style: every <script> has a src, no element has a style or on* attribute
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert not re.search(r"<[^>]+\s(style|on[a-z]+)=", html)
    for name, kind in [("page.js", "text/javascript"), ("page.css", "text/css"), ("favicon.svg", "image/svg+xml")]:
        status, headers, _ = _get(f"{service}/static/{name}")
        assert status == 200 and headers["content-type"].startswith(kind), name
        assert headers["content-security-policy"] == CSP
    status, headers, body = _get(service + "/static/../pyproject.toml")
    assert status == 404 and json.loads(body)["error"] == "not_found"
    status, headers, body = _get(service + "/docs")
    assert status == 200 and b"/openapi.json" in body


def test_the_page_files_ship_in_the_wheel() -> None:
    """pyproject's package data names every file the page serves: an editable install reads src/, a wheel carries
    only what these patterns match."""
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["kzlabel"]
    package = root / "src" / "kzlabel"
    web = sorted(p.relative_to(package).as_posix() for p in (package / "server" / "web").iterdir())
    assert "server/web/index.html" in web and "server/web/page.js" in web
    assert [f for f in web if not any(fnmatch(f, pattern) for pattern in patterns)] == []
    assert set(load_assets()) == {Path(f).name for f in web}  # and the service serves each of them


def test_verify_json_summarises_the_manifest_for_the_page(signer: Signer, trust: TrustStore) -> None:
    first = kzlabel.mark(_png(256, 192, 3), signer=signer, system="S", owner="O", name="a.png")
    again = kzlabel.mark(first, signer=signer, system="Editor", owner="O", name="a.png")
    c2pa = next(
        e for e in kzlabel.verify(again, trust=trust, name="a.png").to_dict()["evidence"] if e["layer"] == "c2pa"
    )
    data = c2pa["data"]
    assert data["actions"][0] == "c2pa.opened"
    assert data["ingredients"] == [
        {"title": "a.png", "format": "image/png", "relationship": "parentOf", "has_manifest": True}
    ]
    assert data["signer"]["issuer"] == "Test Owner LLP" and data["signer"]["common_name"] and data["signer"]["alg"]


# --- the page in the browser -----------------------------------------------------------------------------------------


def test_first_language_comes_from_the_browser(browser: WebDriver, service: str) -> None:
    _open(browser, service)
    assert browser.execute_script("return navigator.languages[0]") == "kk-KZ"
    assert browser.execute_script("return document.documentElement.lang") == "kk"
    assert Select(browser.find_element(By.ID, "lang")).first_selected_option.get_attribute("value") == "kk"
    assert _text(browser, "verdict-title") == ""


def test_marked_image_shows_verdict_label_manifest_watermark_and_warning_region(
    browser: WebDriver, service: str, samples: dict[str, Path], trust: TrustStore, artefacts: Path
) -> None:
    want = _expected(samples["marked"], trust)
    assert want["verdict"] == "compliant" and want["label"]["warning"]["kind"] == "overlay"
    _open(browser, service)
    assert _upload(browser, samples["marked"]) == "compliant"
    assert _text(browser, "verdict-title") == VERDICT_WORDS["kk"]["compliant"]
    assert browser.find_element(By.ID, "accepted").get_attribute("data-accepted") == "true"
    # the signed label
    label = want["label"]
    assert _text(browser, "label-owner") == "ТОО Пример" == label["owner"]
    assert _text(browser, "label-system") == "GenModel 2"
    created = browser.find_element(By.CSS_SELECTOR, "#label-created time")
    assert created.get_attribute("datetime") == label["created"]
    assert created.text == label["created"][:16].replace("T", " ") + " UTC"
    notices = browser.find_elements(By.CSS_SELECTOR, "#label-notice li")
    assert [(n.get_attribute("lang"), n.text) for n in notices][0] == ("kk", label["notice"][0]["text"])
    assert _text(browser, "label-id") == label["content_id"]
    # the C2PA summary: trust, signer, actions, source type
    c2pa = next(e for e in want["evidence"] if e["layer"] == "c2pa")
    assert browser.find_element(By.ID, "c2pa-trust").get_attribute("data-status") == c2pa["status"] == "trusted"
    assert "Test Owner LLP" in _text(browser, "c2pa-signer") and c2pa["data"]["signer"]["issuer"] == "Test Owner LLP"
    actions = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#c2pa-actions code")]
    assert actions == c2pa["data"]["actions"] and "c2pa.watermarked" in actions
    assert c2pa["data"]["digital_source_type"] in _text(browser, "c2pa-source")
    assert "Оқытылған ЖИ моделі жасаған" in _text(browser, "c2pa-source")
    # the watermark and its p-value
    wm = next(e for e in want["evidence"] if e["layer"] == "watermark")
    assert wm["status"] == "found" and wm["data"]["p_value"] < 1e-6
    pvalue = browser.find_element(By.ID, "wm-pvalue")
    assert float(str(pvalue.get_attribute("data-value"))) == wm["data"]["p_value"]
    exponent = int(np.floor(np.log10(wm["data"]["p_value"])))
    assert pvalue.text.endswith("× 10" + str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")))
    assert wm["data"]["payload"] in _text(browser, "wm-payload")
    # every layer's evidence, in the verifier's order
    rows = browser.find_elements(By.CSS_SELECTOR, "#evidence tbody tr")
    assert [r.get_attribute("data-layer") for r in rows] == [e["layer"] for e in want["evidence"]]
    # the recorded warning region, outlined over the preview where the label says it is
    image = browser.find_element(By.CSS_SELECTOR, "#preview img")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script("return arguments[0].naturalWidth", image))
    outline = browser.find_element(By.CSS_SELECTOR, "#preview .warn-box[data-part='overlay']")
    assert outline.is_displayed()
    img, box = _rect(browser, image), _rect(browser, outline)
    fx, fy, fw, fh = label["warning"]["box"]
    assert img["width"] > 200
    for got, want_px in [
        (box["left"], img["left"] + fx * img["width"]),
        (box["top"], img["top"] + fy * img["height"]),
        (box["width"], fw * img["width"]),
        (box["height"], fh * img["height"]),
    ]:
        assert abs(got - want_px) <= 1.5, (box, img, label["warning"]["box"])
    browser.save_screenshot(str(artefacts / "page-marked-kk.png"))


@pytest.mark.slow  # verifying a video takes 1.5-2 s on the shared 2-core machine
def test_marked_video_outlines_the_opening_then_the_persistent_warning(
    browser: WebDriver, service: str, signer: Signer, tmp_path: Path, artefacts: Path
) -> None:
    clip, marked = tmp_path / "clip.mp4", tmp_path / "marked.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", "2.6",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)],
        check=True,
    )  # fmt: skip
    kzlabel.mark(clip, marked, signer=signer, system="GenModel 2", owner="ТОО Пример")
    warning = kzlabel.verify(marked).label.warning  # type: ignore[union-attr]
    assert warning["kind"] == "burned-in" and set(warning["parts"]) == {"opening", "persistent"}
    _open(browser, service)
    assert _upload(browser, marked) == "compliant"
    video = browser.find_element(By.CSS_SELECTOR, "#preview video")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script("return arguments[0].readyState >= 1", video))
    opening = browser.find_element(By.CSS_SELECTOR, ".warn-box[data-part='opening']")
    persistent = browser.find_element(By.CSS_SELECTOR, ".warn-box[data-part='persistent']")
    assert opening.is_displayed() and not persistent.is_displayed()  # at 0 s: the opening warning
    frame, box = _rect(browser, video), _rect(browser, opening)
    fx, fy, fw, fh = warning["parts"]["opening"]["box"]
    assert abs(box["left"] - (frame["left"] + fx * frame["width"])) <= 1.5
    assert abs(box["top"] - (frame["top"] + fy * frame["height"])) <= 1.5
    assert abs(box["width"] - fw * frame["width"]) <= 1.5
    browser.execute_script("arguments[0].currentTime = 2.3", video)
    WebDriverWait(browser, WAIT_S).until(lambda d: persistent.is_displayed())
    assert not opening.is_displayed()
    browser.save_screenshot(str(artefacts / "page-video.png"))


def test_language_switch_changes_the_verdict_text_and_is_remembered(
    browser: WebDriver, service: str, samples: dict[str, Path], artefacts: Path
) -> None:
    _open(browser, service)
    assert _upload(browser, samples["marked"]) == "compliant"
    choose = Select(browser.find_element(By.ID, "lang"))
    for lang in ("ru", "en", "kk", "ru"):
        choose.select_by_value(lang)
        assert _text(browser, "verdict-title") == VERDICT_WORDS[lang]["compliant"]
        assert browser.execute_script("return document.documentElement.lang") == lang
    browser.save_screenshot(str(artefacts / "page-marked-ru.png"))
    _open(browser, service, forget_language=False)
    assert browser.execute_script("return document.documentElement.lang") == "ru"


def test_a_file_dropped_on_the_page_is_checked(browser: WebDriver, service: str, samples: dict[str, Path]) -> None:
    _open(browser, service)
    title = browser.find_element(By.ID, "verdict-title")
    drop = """
    var bytes = Uint8Array.from(atob(arguments[1]), function (c) { return c.charCodeAt(0); });
    var data = new DataTransfer();
    data.items.add(new File([bytes], 'dropped.png', {type: 'image/png'}));
    arguments[0].dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    """
    payload = base64.b64encode(samples["marked"].read_bytes()).decode()
    browser.execute_script(drop, browser.find_element(By.ID, "drop"), payload)
    WebDriverWait(browser, WAIT_S).until(lambda d: title.get_attribute("data-verdict"))
    assert title.get_attribute("data-verdict") == "compliant"
    assert "dropped.png" in _text(browser, "file-line")


def test_unmarked_image_is_unlabelled_without_an_outline(
    browser: WebDriver, service: str, samples: dict[str, Path], trust: TrustStore
) -> None:
    want = _expected(samples["plain"], trust)
    assert want["verdict"] == "unlabelled"
    _open(browser, service)
    Select(browser.find_element(By.ID, "lang")).select_by_value("en")
    assert _upload(browser, samples["plain"]) == "unlabelled"
    assert _text(browser, "verdict-title") == VERDICT_WORDS["en"]["unlabelled"]
    assert browser.find_element(By.ID, "accepted").get_attribute("data-accepted") == "false"
    assert browser.find_element(By.ID, "label-none").is_displayed()
    assert not browser.find_element(By.ID, "label-fields").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#preview img")  # a preview, but nothing to outline
    assert browser.find_elements(By.CSS_SELECTOR, ".warn-box") == []
    wm = next(e for e in want["evidence"] if e["layer"] == "watermark")
    assert browser.find_element(By.ID, "wm-status").get_attribute("data-status") == wm["status"] == "absent"
    assert float(str(browser.find_element(By.ID, "wm-pvalue").get_attribute("data-value"))) == wm["data"]["p_value"]
    assert _text(browser, "c2pa-none") == "The file has no C2PA manifest."


def test_a_mark_with_an_unreadable_payload_reads_stripped_and_says_so(
    browser: WebDriver, service: str, samples: dict[str, Path], trust: TrustStore
) -> None:
    want = _expected(samples["overwritten"], trust)
    wm = next(e for e in want["evidence"] if e["layer"] == "watermark")
    assert want["verdict"] == "stripped" and wm["status"] == "found" and wm["data"]["payload"] is None
    _open(browser, service)
    Select(browser.find_element(By.ID, "lang")).select_by_value("en")
    assert _upload(browser, samples["overwritten"]) == "stripped"
    assert browser.find_element(By.ID, "wm-status").get_attribute("data-status") == "found"
    assert _text(browser, "wm-payload").startswith("unreadable")


def test_an_unsupported_file_shows_the_error_in_words(
    browser: WebDriver, service: str, samples: dict[str, Path]
) -> None:
    _open(browser, service)
    Select(browser.find_element(By.ID, "lang")).select_by_value("ru")
    assert _upload(browser, samples["junk"]) == "error"
    assert _text(browser, "verdict-title") == "Файл не удалось проверить"
    assert _text(browser, "verdict-text") == "Этот тип файлов не поддерживается."
    assert not browser.find_element(By.ID, "result").is_displayed()


def _contrast(driver: WebDriver, element: WebElement) -> float:
    """WCAG contrast of an element's text colour against the first opaque background behind it."""
    script = """
    function rgb(s) { return s.match(/[\\d.]+/g).map(Number); }
    function lum(c) { var v = c.slice(0, 3).map(function (x) { x /= 255;
      return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
      return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; }
    var el = arguments[0], fg = rgb(getComputedStyle(el).color), bg = [255, 255, 255];
    for (var n = el; n; n = n.parentElement) {
      var c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length < 4 || c[3] > 0) { bg = c; break; }
    }
    var a = lum(fg), b = lum(bg);
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    """
    return float(driver.execute_script(script, element))


def test_keyboard_labels_focus_and_contrast(browser: WebDriver, service: str, samples: dict[str, Path]) -> None:
    _open(browser, service)
    unlabelled = browser.execute_script(
        "return Array.from(document.querySelectorAll('input, select')).filter(e => !e.labels.length).map(e => e.id)"
    )
    assert unlabelled == []
    # the controls are reached with Tab alone, in order, each with a visible focus ring
    reached = []
    for _ in range(4):
        ActionChains(browser).send_keys(Keys.TAB).perform()  # to the page: send_keys on a file input uploads
        active = browser.switch_to.active_element
        reached.append(active.get_attribute("id") or active.get_attribute("class") or active.tag_name)
        if active.get_attribute("id") in ("lang", "file"):
            style = browser.execute_script(
                "var s = getComputedStyle(arguments[0]); return [s.outlineStyle, parseFloat(s.outlineWidth)]", active
            )
            assert style[0] != "none" and style[1] >= 2, (active.get_attribute("id"), style)
    assert reached == ["skip", "lang", "file", "a"], reached  # skip link, language, file, the API link
    # the language is switched from the keyboard too
    browser.find_element(By.ID, "lang").send_keys(Keys.END)  # English is the last option
    WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script("return document.documentElement.lang") == "en")
    # text against its background, with a verdict of each colour on screen
    for path in (samples["marked"], samples["plain"], samples["junk"]):
        _upload(browser, path)
        for element_id in ("verdict-title", "verdict-text"):
            assert _contrast(browser, browser.find_element(By.ID, element_id)) >= 4.5, (path.name, element_id)
    for selector in ("h1", ".hint", ".foot a", "label[for=file]"):
        assert _contrast(browser, browser.find_element(By.CSS_SELECTOR, selector)) >= 4.5, selector


def test_docs_page_lists_the_api_from_its_description(browser: WebDriver, service: str) -> None:
    browser.get(service + "/docs")
    table = browser.find_element(By.ID, "endpoints")
    WebDriverWait(browser, WAIT_S).until(lambda d: table.is_displayed())
    rows = [r.text for r in table.find_elements(By.CSS_SELECTOR, "tbody th")]
    assert "POST /verify" in rows and "POST /mark" in rows and "GET /" in rows
    mark_row = table.find_element(By.XPATH, "//tr[th/code='POST /mark']")
    assert "Bearer" in mark_row.text and "429" in mark_row.text


def test_no_script_errors_or_policy_violations(browser: WebDriver, service: str) -> None:
    try:
        entries = browser.get_log("browser")
    except WebDriverException as exc:  # pragma: no cover - a chromedriver without the log endpoint
        pytest.fail(f"chromedriver gave no browser log: {exc}")
    # the unsupported upload's 415 is logged as a failed resource load; anything else is a page error
    expected = re.compile(r"/verify - Failed to load resource: the server responded with a status of 415")
    severe = [e["message"] for e in entries if e["level"] == "SEVERE" and not expected.search(e["message"])]
    assert severe == []
