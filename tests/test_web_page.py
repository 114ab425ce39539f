"""The page at `/` in a real headless Chromium (Debian's, driven by Playwright): generate,
watch progress and previews, cancel, reload into the gallery, reuse settings, errors, API key."""

import os
import shutil

import pytest
import requests

from easel_server import REPO, EaselServer, wait_until

ARTIFACTS = REPO / "test-artifacts"


def chromium_path():
    for candidate in (os.environ.get("EASEL_TEST_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    pytest.fail("no Chromium found: scripts/test installs Debian's `chromium`, or set EASEL_TEST_CHROMIUM")


@pytest.fixture(scope="module")
def web_server(tiny_models, tmp_path_factory):
    easel = EaselServer(tmp_path_factory.mktemp("web"), tiny_models, "--default-model", "tiny", "--preview-every", "2").start()
    try:
        yield easel.wait_ready()
    finally:
        easel.stop()


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


# Records every value the progress bar takes, so a test can see it move.
RECORD_PROGRESS = """
window.__progress = [];
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("progress-bar");
  new MutationObserver(() => window.__progress.push(Number(bar.getAttribute("aria-valuenow"))))
    .observe(bar, { attributes: true, attributeFilter: ["aria-valuenow"] });
});
"""


@pytest.fixture
def page(browser, web_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(RECORD_PROGRESS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(web_server.url + "/")
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def fill(page, prompt, width=128, height=128, steps=12):
    page.fill("#prompt", prompt)
    page.fill("#width", str(width))
    page.fill("#height", str(height))
    page.fill("#steps", str(steps))


def test_generate_shows_progress_previews_and_the_image(page, web_server):
    assert page.title() == "Easel"
    # Choices come from the server: the models, and the sampler list (a fallback while
    # the server has no /v1/samplers).
    assert "Euler a" in page.locator("#sampler option").all_inner_texts()
    fill(page, "a lighthouse at dusk", steps=8)
    page.fill("#negative-prompt", "fog")
    page.click("#seed-mode")  # lock the seed
    page.fill("#seed", "1234")
    page.focus("#prompt")
    page.keyboard.press("Control+Enter")

    page.wait_for_selector("#progress-box:not([hidden])")
    page.wait_for_selector("#current img.result", timeout=120_000)
    size = page.eval_on_selector("#current img.result", "img => [img.naturalWidth, img.naturalHeight, img.dataset.seed]")
    assert size == [128, 128, "1234"]

    progress = page.evaluate("window.__progress")
    assert any(0 < value < 100 for value in progress), f"the bar never showed progress in between: {progress}"
    assert progress[-1] == 100 and progress == sorted(progress)
    assert page.inner_text("#progress-text").startswith("Done")
    # The job's own record matches what the form asked for.
    job = requests.get(web_server.url + "/v1/jobs?limit=1", timeout=10).json()["data"][0]
    assert job["parameters"]["prompt"] == "a lighthouse at dusk" and job["parameters"]["negative_prompt"] == "fog"
    assert job["parameters"]["seed"] == 1234 and job["parameters"]["steps"] == 8
    # The new image is first in the gallery without a reload.
    assert page.inner_text("#gallery .card:first-child .prompt") == "a lighthouse at dusk"


def test_previews_stream_while_running_and_cancel_stops_the_job(page, web_server):
    fill(page, "a very long job", steps=150)
    page.click("#generate")
    page.wait_for_selector("#current img.preview", timeout=120_000)
    assert page.is_enabled("#cancel") and not page.is_enabled("#generate")
    page.wait_for_function("document.getElementById('progress-text').textContent.includes('left')")  # the ETA
    page.click("#cancel")
    page.wait_for_function("document.getElementById('progress-text').textContent.startsWith('Cancelled')", timeout=60_000)
    assert page.is_enabled("#generate")
    job = requests.get(web_server.url + "/v1/jobs?limit=1", timeout=10).json()["data"][0]
    assert job["parameters"]["prompt"] == "a very long job" and job["state"] == "cancelled"
    assert 0 < job["step"] < 150


def test_reload_shows_the_gallery_and_reuse_settings_fills_the_form(page, web_server):
    fill(page, "a red fox in snow", width=64, height=96, steps=2)
    page.click("#generate")
    page.wait_for_selector("#current img.result", timeout=120_000)

    page.reload()
    page.wait_for_selector("#gallery .card")
    first = page.locator("#gallery .card").first
    assert first.locator(".prompt").inner_text() == "a red fox in snow"
    assert "64×96" in first.locator(".params").inner_text()
    wait_until(lambda: first.locator("img").evaluate("img => img.complete && img.naturalWidth") == 64, 30,
               "the gallery image never loaded")
    # Newest first: the lighthouse of the first test comes later.
    prompts = page.locator("#gallery .card .prompt").all_inner_texts()
    assert prompts.index("a red fox in snow") < prompts.index("a lighthouse at dusk")

    page.fill("#prompt", "")
    page.locator("#gallery .card", has_text="a lighthouse at dusk").locator("button.reuse").click()
    assert page.input_value("#prompt") == "a lighthouse at dusk"
    assert page.input_value("#negative-prompt") == "fog"
    assert page.input_value("#seed") == "1234" and page.get_attribute("#seed-mode", "aria-pressed") == "true"
    assert (page.input_value("#width"), page.input_value("#height"), page.input_value("#steps")) == ("128", "128", "8")

    # The reused settings (fewer steps, to be quick) keep the seed and the size.
    page.fill("#steps", "3")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#current img.result", timeout=120_000)
    assert page.eval_on_selector("#current img.result", "img => [img.naturalWidth, img.dataset.seed]") == [128, "1234"]
    assert page.locator("#gallery .card").count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)


def test_server_errors_read_as_messages(page):
    fill(page, "a bad size", width=100)
    page.click("#generate")
    page.wait_for_selector("#error:not([hidden])")
    message = page.inner_text("#error")
    assert "multiple of 8" in message and "width" in message
    assert page.is_enabled("#generate")


def test_the_api_key_is_kept_and_sent_with_every_call(page, web_server):
    page.click("#key-button")
    page.fill("#api-key", "secret-key-1")
    page.click("#key-save")
    assert page.evaluate("localStorage.getItem('easel.apiKey')") == "secret-key-1"
    seen = {}
    page.on("request", lambda request: seen.setdefault(request.url.split("?")[0].replace(web_server.url, ""),
                                                       request.headers.get("authorization")))
    page.reload()
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    fill(page, "with a key", width=64, height=64, steps=2)
    page.click("#generate")
    page.wait_for_selector("#current img.result", timeout=120_000)
    job_paths = [path for path in seen if path.startswith("/v1/jobs/")]
    assert seen["/v1/jobs"] == "Bearer secret-key-1" and seen["/v1/models"] == "Bearer secret-key-1"
    assert any(path.endswith("/events") for path in job_paths)
    assert all(seen[path] == "Bearer secret-key-1" for path in job_paths)
    assert any(seen[path] == "Bearer secret-key-1" for path in seen if path.startswith("/v1/images/"))
    page.click("#key-button")
    page.click("#key-clear")
    assert page.evaluate("localStorage.getItem('easel.apiKey')") is None


def test_docs_page_lists_the_api(browser, web_server):
    page = browser.new_page()
    page.goto(web_server.url + "/docs")
    page.wait_for_selector("details.op")
    summaries = page.locator("details.op summary").all_inner_texts()
    assert any("/v1/jobs/{id}/events" in text for text in summaries)
    page.locator("details.op", has_text="/v1/txt2img").first.locator("summary").click()
    assert "cfg_scale" in page.locator("details.op[open]").inner_text()
    page.close()
