"""The widgets in a real JupyterLab, driven by headless Chromium (Debian's `chromium` through
Playwright), and a screenshot of a report's index.html.

`make test-browser` runs this file (FDPKIT_BROWSER=1). JupyterLab listens on a free loopback port
with a random token; Chromium gets a fresh profile and the flags these machines need. Screenshots go
to $FDPKIT_BROWSER_OUT (default: the test's temporary folder).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("FDPKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
REDRAW_TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("FDPKIT_BROWSER_OUT") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) "
                    "or set FDPKIT_CHROMIUM")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("Playwright is not installed: pip install -e '.[browser]' (or pip install playwright)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh user-data dir
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


def _widget_notebook(folder: Path) -> Path:
    """A notebook showing both widgets on the test's records (ClipInspector, AttributionExplorer)."""
    setup = (f"import sys\nsys.path.insert(0, {str(HERE)!r})\n"
             "from widget_records import records\nfrom fdpkit.viz import widgets\nclips = records()")
    cells = [nbformat.v4.new_code_cell(setup),
             nbformat.v4.new_code_cell("widgets.interactive(widgets.ClipInspector, clips, "
                                       "labels=[c['clip_uid'] for c in clips])"),
             nbformat.v4.new_code_cell("widgets.interactive(widgets.AttributionExplorer, clips, "
                                       "['integrated_gradients', 'saliency'], labels=[c['clip_uid'] for c in clips])")]
    book = nbformat.v4.new_notebook(cells=cells)
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "widgets.ipynb"
    nbformat.write(book, str(path))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a loopback port; stopped (its process group) at the end."""
    root = tmp_path_factory.mktemp("lab")
    _widget_notebook(root)
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in ("FDPKIT_SMOKE", "FDPKIT_HEADLESS")}
    env["JUPYTER_CONFIG_DIR"] = str(root / ".jupyter-config")  # no user settings, no workspace state
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(root / ".workspaces")
    log = open(root / "lab.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}: {(root / 'lab.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as response:
                    json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in 120 s: {(root / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield {"url": base, "token": token, "root": root}
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (it and its kernels), SIGKILL after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _figure_src(view) -> str:
    """The src of the PNG the widget's Output shows (its current figure)."""
    image = view.locator(".widget-output img").first
    image.wait_for(state="visible", timeout=REDRAW_TIMEOUT_MS)
    return image.get_attribute("src")


def _wait_for_redraw(page, view, before: str) -> str:
    deadline = time.monotonic() + REDRAW_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        try:
            now = _figure_src(view)
        except Exception:  # the Output is cleared while it redraws
            now = before
        if now and now != before:
            return now
        page.wait_for_timeout(250)
    raise AssertionError("the figure was not redrawn within 60 s")


def _move_slider(view) -> str:
    """Press → on the frame slider's handle; returns the slider's label before the move."""
    slider = view.locator(".widget-slider").first
    label = slider.locator(".widget-readout").first.inner_text()
    slider.locator(".noUi-handle").first.focus()
    slider.locator(".noUi-handle").first.press("ArrowRight")
    return label


def test_widgets_redraw_in_jupyterlab(lab, browser, out_dir):
    page = browser.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(lab["url"]) else route.abort())
    page.goto(f"{lab['url']}/lab/tree/widgets.ipynb?token={lab['token']}")
    page.locator(".jp-Notebook").wait_for(timeout=120_000)
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    try:  # JupyterLab may ask which kernel to start
        select.wait_for(timeout=15_000)
        select.click()
    except Exception:
        pass
    page.get_by_text("| Idle").first.wait_for(timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator("li[data-command='runmenu:run-all']").click()
    views = page.locator(".widget-vbox")
    try:
        views.nth(1).wait_for(timeout=REDRAW_TIMEOUT_MS)
    except Exception:
        page.screenshot(path=str(out_dir / "lab-failed.png"), full_page=True)
        raise
    inspector, explorer = views.nth(0), views.nth(1)

    # ClipInspector: opens at the apex (#19 of 3, 7, ..., 31), slider labelled with frame numbers
    first = _figure_src(inspector)
    label = _move_slider(inspector)
    assert label == "#19"
    after_frame = _wait_for_redraw(page, inspector, first)
    assert inspector.locator(".widget-slider .widget-readout").first.inner_text() == "#23"
    inspector.locator(".widget-dropdown select").first.select_option(index=1)
    _wait_for_redraw(page, inspector, after_frame)
    page.screenshot(path=str(out_dir / "lab-clip-inspector.png"), full_page=True)

    # AttributionExplorer: opens where IG attributes most (never its all-zero onset frame)
    first = _figure_src(explorer)
    assert explorer.locator(".widget-slider .widget-readout").first.inner_text() != "#3"
    _move_slider(explorer)
    after_frame = _wait_for_redraw(page, explorer, first)
    explorer.locator(".widget-dropdown select").first.select_option(index=2)
    _wait_for_redraw(page, explorer, after_frame)
    explorer.scroll_into_view_if_needed()
    page.screenshot(path=str(out_dir / "lab-attribution-explorer.png"), full_page=True)
    page.close()


@pytest.fixture(scope="module")
def report_index(tmp_path_factory) -> Path:
    """$FDPKIT_REPORT_INDEX, else a smoke report of a 4-subject SynthME built here."""
    given = os.environ.get("FDPKIT_REPORT_INDEX")
    if given:
        return Path(given)
    from fdpkit.synthme.corpus import generate_synthme
    from fdpkit.nb.report import build_report

    folder = tmp_path_factory.mktemp("report")
    generate_synthme(folder / "corpus", subjects=4, clips_per_subject=4, seed=3)
    saved = {k: os.environ.get(k) for k in ("FDPKIT_SMOKE", "FDPKIT_HOME")}
    os.environ.update(FDPKIT_SMOKE="1", FDPKIT_HOME=str(folder / "home"))
    try:
        return build_report("synthme", folder / "out", root=folder / "corpus",
                            parameters={"steps": 3, "ig_steps": 3}, progress=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_report_index_opens_offline(report_index, browser, out_dir):
    page = browser.new_page()
    fetched = []

    def only_local(route):
        if route.request.url.startswith(("file://", "data:")):
            route.continue_()
        else:
            fetched.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(report_index.resolve().as_uri())
    page.locator("#headline img").wait_for(timeout=30_000)
    assert page.evaluate("document.querySelector('#headline img').naturalWidth") > 100  # the figure decoded
    assert page.evaluate("getComputedStyle(document.body).fontFamily").split(",")[0] != "\"Times New Roman\""
    page.screenshot(path=str(out_dir / "report-index.png"), full_page=True)
    for link in page.locator("#notebooks a").all():
        href = link.get_attribute("href")
        page_two = browser.new_page()
        page_two.route("**/*", only_local)
        page_two.goto((report_index.parent / href).resolve().as_uri())
        page_two.close()
    assert not fetched, f"the report fetched {fetched[:3]}"
    assert (out_dir / "report-index.png").stat().st_size > 10_000
    page.close()
    if os.environ.get("FDPKIT_BROWSER_OUT"):
        shutil.copy2(report_index, out_dir / "report-index.html")
