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

from cycl_bench.leaderboard.site import build_site
from cycl_bench.leaderboard.validate import submission_files, validate

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
    checked = validate(submission_files([submissions]))
    assert all(item.ok for item in checked), [item.problems for item in checked]
    out = tmp_path / "site"
    build_site([(item.path, item.submission) for item in checked], out)
    return out


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
