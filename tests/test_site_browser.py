"""The built site in a real headless Chromium: served from 127.0.0.1, a column sorted by a real
mouse click on its header, the order checked, a screenshot saved.

Chromium is driven through Selenium (the `dev` extra) and Debian's chromedriver, both found on the
PATH: nothing is downloaded. Install them with `apt-get install -y chromium chromium-driver`.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from test_leaderboard_support import make_claimed, make_submission, write_submission

from cycl_bench.export.saved import file_sha256
from cycl_bench.leaderboard.site import build_site
from cycl_bench.leaderboard.validate import submission_files, validate
from cycl_bench.leaderboard.verify import VerificationRecord, write_record

INSTALL = "install them with `apt-get install -y chromium chromium-driver` (Debian/Ubuntu)"
HOSTILE_NAME = "<script>window.pwned = 1</script> & friends"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1280,1000",
)
ROWS = "Array.from(document.querySelectorAll('#reproduced tbody tr'))"


def found(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"Chromium and its driver are needed for the browser test: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def site(tmp_path):
    submissions = tmp_path / "submissions"
    write_submission(submissions, make_submission("Middle", level=0.85, train_bitops=5e13))
    write_submission(submissions, make_submission("Best", level=0.95, train_bitops=2e13))
    write_submission(submissions, make_submission(HOSTILE_NAME, level=0.6, train_bitops=1e14))
    write_submission(submissions, make_claimed())
    write_submission(submissions, make_submission("Checked", level=0.7, train_bitops=3e13))
    synthetic = make_submission("Reference run", level=0.75, data_source="synthetic")
    write_submission(submissions, synthetic)
    checked = validate(submission_files([submissions]))
    assert all(item.ok for item in checked), [item.problems for item in checked]
    records = tmp_path / "records"
    for item in checked:
        status = {"Checked": "verified", "Reference run": "verified", "Middle": "drifted"}
        if item.submission.entry.name in status:
            write_record(
                records, item.submission, record(item.path, status[item.submission.entry.name])
            )
    out = tmp_path / "site"
    build_site([(item.path, item.submission) for item in checked], out, records)
    return out


def record(path, status: str) -> VerificationRecord:
    """What `leaderboard verify` writes for the file at `path` (its models are not part of this
    test: the site shows what the record says)."""
    return VerificationRecord(
        submission=f"core50_nc/{path.name}",
        submission_sha256=file_sha256(path),
        status=status,
        reason="seed 0, test view 3: the file says 52.00%, the model gives 40.00%"
        if status == "drifted"
        else "",
        verified_at="2026-12-07T01:02:03+00:00",
        verified_by="test",
        hardware="cpu",
        cycl_bench_version="0",
        tolerance="per test view, max(1 image, 0.5% of its images)",
    )


@pytest.fixture
def server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile; `get` returns once the page's load event fired."""
    options = webdriver.ChromeOptions()
    options.binary_location = found("chromium", "chromium-browser", "google-chrome")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=found("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def column_values(browser, column: int) -> list[float]:
    return browser.execute_script(
        f"return {ROWS}.map(row => parseFloat(row.cells[{column}].dataset.value))"
    )


def names(browser) -> list[str]:
    return browser.execute_script(f"return {ROWS}.map(row => row.cells[0].textContent)")


def click(browser, selector: str) -> None:
    """A real mouse click (press and release) at the centre of the element."""
    browser.find_element(By.CSS_SELECTOR, selector).click()


def test_sorting_by_a_header_click_in_chromium(browser, server, tmp_path):
    browser.get(f"{server}/core50_nc.html")
    assert names(browser) == ["Best", "Middle", HOSTILE_NAME]

    accuracy_header = "#reproduced thead th:nth-child(5) button"
    click(browser, accuracy_header)
    ascending = column_values(browser, 4)
    assert ascending == sorted(ascending) and len(ascending) == 3
    assert names(browser) == [HOSTILE_NAME, "Middle", "Best"]
    header = browser.find_element(By.CSS_SELECTOR, "#reproduced thead th:nth-child(5)")
    assert header.get_attribute("aria-sort") == "ascending"

    click(browser, accuracy_header)
    assert column_values(browser, 4) == sorted(ascending, reverse=True)

    click(browser, "#reproduced thead th:nth-child(6) button")  # forgetting
    forgetting = column_values(browser, 5)
    assert forgetting == sorted(forgetting) and len(set(forgetting)) == 3

    # the hostile name is text on the page, its script never ran
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    assert browser.find_elements(By.CSS_SELECTOR, "main script") == []

    image = browser.get_screenshot_as_png()
    assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 10_000
    (tmp_path / "leaderboard.png").write_bytes(image)


def test_filtering_by_typing_in_chromium(browser, server):
    browser.get(f"{server}/core50_nc.html")
    browser.find_element(By.CSS_SELECTOR, "input.table-filter[data-table='reproduced']").send_keys(
        "midd"
    )
    visible = browser.execute_script(
        f"return {ROWS}.filter(r => !r.hidden).map(r => r.cells[0].textContent)"
    )
    assert visible == ["Middle"]
    counter = browser.find_element(By.CSS_SELECTOR, ".row-count[data-table='reproduced']")
    assert counter.text == "1 of 3 rows"


def test_the_site_works_from_file_urls(browser, site):
    browser.get((site / "core50_nc.html").as_uri())
    click(browser, "#reproduced thead th:nth-child(5) button")
    values = column_values(browser, 4)
    assert values == sorted(values)
    assert browser.execute_script("return document.styleSheets.length") == 1


def table_rows(browser, table_id: str) -> list[list[str]]:
    return browser.execute_script(
        f"return Array.from(document.querySelectorAll('#{table_id} tbody tr'))"
        ".map(row => Array.from(row.cells).map(cell => cell.textContent.trim()))"
    )


def test_tiers_and_the_synthetic_track_in_chromium(browser, server, tmp_path):
    browser.get(f"{server}/core50_nc.html")
    # verified: its own table, its badge with the date
    [checked] = table_rows(browser, "verified")
    assert checked[0] == "Checked" and checked[-1] == "verified 2026-12-07"
    # drifted: stays reproduced, says so, the reason in its tooltip
    middle = next(row for row in table_rows(browser, "reproduced") if row[0] == "Middle")
    assert "reproduced" in middle[-1] and "drifted 2026-12-07" in middle[-1]
    badge = browser.find_element(By.CSS_SELECTOR, "#reproduced .badge.drifted")
    assert "the model gives 40.00%" in badge.get_attribute("title")
    # the synthetic track: a section of its own, labelled, every row badged
    heading = browser.find_element(By.CSS_SELECTOR, "#track-synthetic h2")
    assert heading.text == "Reference track: synthetic data" and heading.is_displayed()
    assert (
        "never ranked with real-data rows"
        in browser.find_element(By.CSS_SELECTOR, "#track-synthetic .track-label").text
    )
    [reference] = table_rows(browser, "synthetic-verified")
    assert reference[0] == "Reference run" and "synthetic data" in reference[-1]
    real_names = [row[0] for t in ("verified", "reproduced") for row in table_rows(browser, t)]
    assert "Reference run" not in real_names
    browser.execute_script("document.getElementById('track-synthetic').scrollIntoView()")
    (tmp_path / "tracks.png").write_bytes(browser.get_screenshot_as_png())
    # the drifted entry's page gives the reason
    browser.get(f"{server}/core50_nc/middle.html")
    assert "seed 0, test view 3" in browser.find_element(By.TAG_NAME, "main").text
