"""The Airflow UI in a real browser: Debian's headless Chromium, driven by Playwright. The screenshots are kept in
test-artifacts/ (ui-trigger-form.png, ui-dry-run.png)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import urllib.parse

import pytest

from dev.demo_data import distinct_candidates as candidates
from tests.e2e.conftest import ARTIFACTS, DAG_ID, Stack, outcomes
from tests.warehouses import TestWarehouse

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a headless browser on a machine with no route out: no sandbox (root), no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.timeout(900)
PARAM_TITLES = ["Dry run", "Candidate ids", "Retry rejected and failed", "Limit", "Max reject ratio"]


@pytest.fixture
def page(e2e: Stack):
    from playwright.sync_api import sync_playwright

    if not shutil.which("chromium"):
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package (scripts/install_chromium.sh)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            page.screenshot(path=str(ARTIFACTS / "ui-last-page.png"))
            browser.close()


def test_the_trigger_form_shows_the_params_and_a_dry_run_from_it_succeeds(e2e: Stack, warehouse: TestWarehouse, page):
    rows = candidates(dt.date(2026, 6, 6), 5, first_account=20_000)
    warehouse.seed(rows)

    page.goto(e2e.url)
    page.get_by_label(re.compile("username", re.I)).fill("admin")
    page.get_by_label(re.compile("password", re.I)).fill(e2e.password())
    page.get_by_role("button", name=re.compile("sign in", re.I)).click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login)"))

    page.goto(f"{e2e.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    for title in PARAM_TITLES:
        # The field's label: its title, and a star when a value is required.
        form.get_by_text(re.compile(rf"^{re.escape(title)}\s*\*?$")).first.wait_for()
    form.locator("label:has(input[name='element_dry_run'])").click()
    form.locator("label:has(input[name='element_include_all_pending'])").click()
    assert form.locator("input[name='element_dry_run']").is_checked()
    page.screenshot(path=str(ARTIFACTS / "ui-trigger-form.png"))
    form.get_by_role("button", name="Trigger", exact=True).click()

    page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/"))
    run_id = urllib.parse.unquote(page.url.rsplit("/runs/", 1)[1])
    # The run page's header: the run id, then the run's state badge, which the page refreshes by itself.
    run_state = page.locator(f"h2:text-is('{run_id}') ~ [data-testid='state-badge']")
    run_state.filter(has_text="Success").wait_for(timeout=180_000)
    page.screenshot(path=str(ARTIFACTS / "ui-dry-run.png"))

    run = e2e.sync_run(run_id)
    assert run["state"] == "success"
    assert run["conf"]["dry_run"] is True
    assert not e2e.creates()
    assert not outcomes(warehouse)
    history = warehouse.query("SELECT status FROM partner_relationship_attempts WHERE dag_run_id = ?", (run_id,))
    assert [row["status"] for row in history] == ["dry_run"] * len(rows)
