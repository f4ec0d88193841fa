"""The dashboard (GET /) in a real headless Chromium against a real server: the seeded model
appears, a promote with a wrong key shows the error, a dataset uploaded from the page is listed,
a tiny training job started from the page succeeds with its learning curves drawn from the real
metric points, a model answers in "Try it", a phone-width window does not scroll sideways, and
the browser console stays free of errors. Screenshots of each step are saved under
test-artifacts/dashboard/.

Needs Debian's `chromium` (apt-get install chromium) and the `playwright` package (dev extra;
`playwright install` is not needed): the test skips, saying which, when either is missing."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.serving import (
    API_KEY,
    MODEL,
    REPO,
    TINY_PARAMS,
    Bundle,
    Server,
    fill_store,
    running_server,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def dashboard_server(
    bundles: list[Bundle], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("dashboard") / "store"
    fill_store(store, bundles)
    with running_server(store, BEAR_API_KEYS=API_KEY, BEAR_MAX_CONCURRENT_JOBS="1") as running:
        yield running


@pytest.fixture()
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install -e '.[dev]'"
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
    return value


def test_dashboard_in_a_browser(dashboard_server: Server, browser: Any, pendulum_h5: Path) -> None:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    shots: list[Path] = []
    errors: list[str] = []
    expected_403: list[str] = []
    url = dashboard_server.url
    api = dashboard_server.client()

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)

    def on_console(message: Any) -> None:
        if message.type != "error":
            return
        text = f"console: {message.text} ({message.location.get('url')})"
        # The wrong-key promote is refused on purpose: Chromium logs the refused request.
        if "status of 403" in message.text and "/promote" in message.location.get("url", ""):
            expected_403.append(text)
        else:
            errors.append(text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    def shot(name: str, full_page: bool = True) -> None:
        path = ARTIFACTS / name
        page.screenshot(path=str(path), full_page=full_page)
        shots.append(path)

    try:
        # 1. The page loads without a key and lists the seeded model with its production version.
        response = page.goto(url + "/")
        assert response is not None and response.status == 200
        assert response.headers["content-type"].startswith("text/html")
        card = page.locator(f'article[data-model="{MODEL}"]')
        card.wait_for()
        assert "production v1" in card.inner_text()
        assert card.locator('tr[data-version="2"]').count() == 1
        shot("01-models.png")

        # 2. A promote with a wrong key (by keyboard) shows the error; production is unchanged.
        page.fill("#api-key", "wrong-key")
        page.press("#api-key", "Enter")
        promote = page.get_by_role("button", name=f"Promote {MODEL} version 2")
        promote.focus()
        page.keyboard.press("Enter")
        alert = card.locator("p.error[role=alert]")
        alert.filter(has_text="403").wait_for()
        assert "X-API-Key is not valid" in alert.inner_text()
        assert api.get(f"/models/{MODEL}").json()["production"] == "1"
        shot("02-promote-wrong-key.png")

        # 3. With the right key, a dataset uploaded from the page (XHR, progress) is listed.
        page.fill("#api-key", API_KEY)
        page.click("#key-form button[type=submit]")
        page.set_input_files("#upload-file", str(pendulum_h5))
        page.click("#upload-form button[type=submit]")
        page.locator("#upload-status", has_text="stored as").wait_for()
        (dataset,) = api.get("/datasets").json()["datasets"]
        row = page.locator(f'tr[data-dataset="{dataset["id"]}"]')
        row.wait_for()
        assert str(dataset["n_transitions"]) in row.inner_text()
        shot("03-dataset-uploaded.png")

        # 4. A tiny training job started from the page runs to success; its curves are drawn
        #    from every point of the job's metric series.
        page.click("#train-box summary")
        page.select_option("#train-dataset", dataset["id"])
        page.fill("#train-model", "tiny")
        page.fill("#train-steps", "20")
        page.fill("#train-seed", "0")
        page.fill("#train-params", json.dumps(TINY_PARAMS))
        page.click("#train-form button[type=submit]")
        job_card = page.locator("article.job").first
        job_card.wait_for()
        job_id = job_card.get_attribute("data-job")
        assert job_id
        shot("04-job-started.png")
        page.locator(f'article.job[data-job="{job_id}"][data-state="succeeded"]').wait_for(
            timeout=90_000
        )
        series = api.get(f"/jobs/{job_id}/metrics").json()["series"]
        assert series, "the job logged no metrics"

        def curves_complete() -> bool:
            charts = job_card.locator("figure.chart")
            drawn = {
                charts.nth(i).get_attribute("data-metric"): charts.nth(i).get_attribute(
                    "data-points"
                )
                for i in range(charts.count())
            }
            return drawn == {
                name: str(sum(v is not None for v in line["value"]))
                for name, line in series.items()
            }

        _wait(curves_complete, 15, "the job's curves to show every metric point")
        for name, line in series.items():
            points = job_card.locator(f'figure.chart[data-metric="{name}"] polyline')
            coordinates = sum(
                len(points.nth(i).get_attribute("points").split()) for i in range(points.count())
            )
            assert coordinates == sum(v is not None for v in line["value"]), name
        assert max(len(line["value"]) for line in series.values()) >= 2, "one epoch only"
        assert "elapsed" in job_card.inner_text()
        page.locator('article[data-model="tiny"]').wait_for()
        job_card.scroll_into_view_if_needed()
        shot("05-job-succeeded-curves.png")

        # 5. Try it: an action, then a value estimate with its std over the critics.
        page.select_option("#try-version", f"{MODEL}/1")
        page.get_by_role("button", name="Predict action").click()
        page.locator("#try-result li", has_text="action").wait_for()
        page.get_by_role("button", name="Estimate value").click()
        page.locator("#try-result li", has_text="±").wait_for()
        page.locator("#try").scroll_into_view_if_needed()
        shot("06-try-it.png", full_page=False)

        # 6. A phone-width window: no sideways scrolling.
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        page.locator(f'article[data-model="{MODEL}"]').wait_for()
        page.locator("article.job .job-times").first.wait_for()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
        shot("07-phone.png")
    finally:
        context.close()
        api.close()
        print("dashboard screenshots:", *(str(p.relative_to(REPO)) for p in shots), sep="\n  ")

    assert not errors, "\n".join(errors)
    assert len(expected_403) <= 1, expected_403
