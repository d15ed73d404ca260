"""The Dagster UI in headless Chromium: the asset graph and the audit asset's page, after a real run.

Debian's `chromium` (/usr/bin/chromium) driven by Playwright for Python over the DevTools
protocol; Playwright's own browser downloads are never used. What the page must show is read
from the GraphQL API of the same server, so the UI is checked against the API, not against
itself. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assets.audit.findings import FINDING_FIELDS
from assets.partitions import topic_partition_key
from tests.ui.conftest import LEGACY_FAILED_CHECKS, SCREENSHOTS, active_topics

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 20_000

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM} (Debian package `chromium`; .ci/run installs it)",
    ),
    pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning"),
]

EXPECTATIONS_QUERY = """
query UiExpectations {
  assetNodes {
    assetKey { path }
    isMaterializable
    isPartitioned
    partitionKeys
    assetMaterializations(limit: 1) { metadataEntries { label ... on IntMetadataEntry { intValue } } }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
    }
  }
}
"""

# AssetCheckExecutionResolvedStatus -> the word the Checks tab shows
STATUS_LABEL = {"SUCCEEDED": "Succeeded", "FAILED": "Failed"}


@pytest.fixture
def page(webserver, request):
    """A Chromium page on the webserver; uncaught page errors are collected on `page.errors`.

    When the test fails, the page as it was is saved as `<test name>-failure.png`.
    """
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 800}, base_url=webserver.url)
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.errors = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            yield page
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=SCREENSHOTS / f"{request.node.name}-failure.png", full_page=True)
        finally:
            browser.close()


def _expectations(webserver) -> dict[str, dict]:
    """Asset name -> its node (with `checks`: name -> latest execution status), from the API the UI reads."""
    expected = {}
    for node in webserver.query(EXPECTATIONS_QUERY)["assetNodes"]:
        checks = node.pop("assetChecksOrError")
        assert checks["__typename"] == "AssetChecks", checks
        node["checks"] = {
            c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in checks["checks"]
        }
        expected["/".join(node["assetKey"]["path"])] = node
    return expected


def _show_whole_graph(page) -> None:
    """Expand every asset group, hide the navigation, and reload so the graph fits the view."""
    from playwright.sync_api import expect

    expect(page.locator("svg foreignObject").first).to_be_visible()
    page.get_by_role("button", name="settings", exact=True).click()
    toggle = page.get_by_role("menu").get_by_role("menuitem", name=re.compile("(Expand|Collapse) all groups"))
    expect(toggle).to_be_visible()
    if "Expand" in toggle.inner_text():
        toggle.click()
    else:  # already expanded (a single group)
        page.keyboard.press("Escape")
    page.get_by_text("Hide navigation").click()
    page.reload()  # both choices persist in local storage; a fresh load fits the graph to the view


def test_asset_graph_and_audit_page_show_assets_checks_and_findings(webserver, page, legacy_db):
    from playwright.sync_api import expect

    webserver.run_chain([topic_partition_key(k) for k in active_topics(legacy_db, 2)])
    # The first-visit "Join the Dagster community" dialog covers the page; an operator skips it once.
    assert webserver.query("mutation { setNuxSeen }")["setNuxSeen"] is True
    expected = _expectations(webserver)
    audit_checks = expected["schema_audit"]["checks"]
    # The chain fixed the schema after auditing it and evaluated the audit's checks again: none shows red.
    assert set(LEGACY_FAILED_CHECKS) <= set(audit_checks) and set(audit_checks.values()) == {"SUCCEEDED"}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    # The asset graph: a node per asset, showing that the chain materialized it and how many of its
    # checks passed, as the API says.
    page.goto("/asset-groups")
    _show_whole_graph(page)
    for name, asset in expected.items():
        node = page.locator(f'svg foreignObject [data-tooltip="{name}"]').locator(
            "xpath=ancestor::*[local-name()='foreignObject'][1]"
        )
        expect(node).to_be_visible()
        if asset["isPartitioned"]:
            expect(node).to_contain_text(f"{len(asset['partitionKeys'])} partitions")
        elif asset["isMaterializable"]:
            expect(node).to_contain_text("Materialized")
        if checks := asset["checks"]:
            passed = sum(status == "SUCCEEDED" for status in checks.values())
            expect(node).to_contain_text(f"{passed} / {len(checks)} Passed")
    expect(page.locator("svg foreignObject").filter(has_text="Postgres").first).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "asset-graph.png")

    # The audit asset's page: definition, and the findings as a table under the findings_table key.
    page.goto("/assets/schema_audit")
    expect(page.get_by_text("data-platform", exact=True).first).to_be_visible()
    findings = page.locator("xpath=//tr[td[1][normalize-space()='findings_table']]//table")
    expect(findings).to_be_visible()
    expect(findings.locator("thead th")).to_have_text(list(FINDING_FIELDS))
    [latest] = expected["schema_audit"]["assetMaterializations"]
    row_count = next(e["intValue"] for e in latest["metadataEntries"] if e["label"] == "dagster/row_count")
    expect(findings.locator("tbody tr")).to_have_count(row_count)
    rows = [
        dict(zip(FINDING_FIELDS, row.locator("td").all_inner_texts(), strict=True))
        for row in findings.locator("tbody tr").all()
    ]
    rejected = {
        (r["table"], r["column"]): set(r["rejected"].split(", "))
        for r in rows
        if r["kind"] == "rejected_values" and r["severity"] == "error"
    }
    assert rejected == {
        ("batch_jobs", "status"): LEGACY_FAILED_CHECKS["batch_jobs_status_accepts_code_values"],
        ("batch_items", "status"): LEGACY_FAILED_CHECKS["batch_items_status_accepts_code_values"],
    }
    page.screenshot(path=SCREENSHOTS / "schema-audit.png")
    findings.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOTS / "schema-audit-findings.png")

    # The Checks tab: every check, each with the outcome the API reports for this run.
    page.set_viewport_size({"width": 1600, "height": 1200})  # the list is virtualized: show every row
    page.goto("/assets/schema_audit?view=checks")
    for name, status in audit_checks.items():
        row_status = page.locator(f'[title="{name}"]').first.locator("xpath=following-sibling::span")
        expect(row_status).to_have_text(STATUS_LABEL[status], ignore_case=True)
    expect(page.get_by_text(re.compile(r"This is a (non-)?blocking asset check"))).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "schema-audit-checks.png")

    assert page.errors == [], f"uncaught errors in the UI: {page.errors}"
