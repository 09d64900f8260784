"""The uploads page in a real browser (headless Debian chromium through Selenium) against a
real ``hathd run`` with ``[recipes]`` on a fake imx.to (a real HTTP server on 127.0.0.1 in a
thread of its own): a folder added from the page is uploaded, and the recent work and the
upload batch show the result links."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select

from fakes.imagehost_setup import IMX_KEY, make_image
from fakes.imagehosts import FakeImx, content_id, running
from web.browser_support import (
    Hathd,
    TrioThread,
    browser,
    console_errors,
    start_hathd,
    stop_hathd,
    wait_for,
)

__all__ = ["browser"]

PASSWORD = "a long admin password"


@pytest.fixture(scope="module")
def imx() -> Iterator[FakeImx]:
    host = FakeImx(IMX_KEY)
    with TrioThread(partial(running, host)):
        yield host


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pics") / "holiday"
    folder.mkdir()
    for i in range(2):
        make_image(folder, f"photo{i}.jpg", 2000 + 700 * i, i)
    return folder


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, imx: FakeImx, pictures: Path) -> Iterator[Hathd]:
    config = (
        f"[recipes]\nroots = [{str(pictures.parent)!r}]\n"
        f'[recipes.services."imx.to"]\nbase_url = "{imx.base_url}"\n'
        f'credentials = {{ api_key = "{IMX_KEY}" }}\n'
    )
    handle = start_hathd(tmp_path_factory.mktemp("hathd"), config)
    try:
        yield handle
    finally:
        stop_hathd(handle)


def test_upload_a_folder_from_the_page(
    browser: WebDriver, node: Hathd, imx: FakeImx, pictures: Path
) -> None:
    browser.get(node.url + "/setup")
    for field in ("password", "password2"):
        browser.find_element(By.ID, field).send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#setup-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "logout"), "setup logs the admin in")

    browser.get(node.url + "/work")
    wait_for(browser, lambda d: d.find_element(By.ID, "live").text == "Live", "WebSocket open")
    Select(browser.find_element(By.ID, "add-kind")).select_by_value("upload")
    service = Select(browser.find_element(By.ID, "add-service"))
    # the option's value is the recipe id the API takes, whatever its display name
    wait_for(browser, lambda d: [o.get_attribute("value") for o in service.options], "recipes")
    assert "imx.to" in [o.get_attribute("value") for o in service.options]
    service.select_by_value("imx.to")
    browser.find_element(By.ID, "add-target").send_keys(str(pictures))
    browser.find_element(By.CSS_SELECTOR, "#add-form button[type=submit]").click()

    links = [f"https://imx.to/i/{content_id(p.read_bytes())}" for p in sorted(pictures.iterdir())]
    row = "#batches tbody tr"
    wait_for(
        browser,
        # the state word itself: the row's counts ("1 done, 0 failed, 1 active") say "done"
        # while a file is still uploading
        lambda d: d.find_element(By.CSS_SELECTOR, f"{row} .state").text.lower() == "done",
        "the batch is listed as done",
    )
    shown = browser.find_element(By.CSS_SELECTOR, f"{row} textarea").get_attribute("value") or ""
    assert shown.split() == links
    # each upload job is in the recent work with its result as a link
    wait_for(
        browser,
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "#recent a[href^='https://imx.to/i/']")) == 2
        ),
        "the recent work links the results",
    )
    hrefs = {
        a.get_attribute("href")
        for a in browser.find_elements(By.CSS_SELECTOR, "#recent a[href^='https://imx.to/i/']")
    }
    assert hrefs == set(links)
    assert imx.lines() == ["POST /v1/upload.php", "POST /v1/upload.php"]
    errors = console_errors(browser)
    assert errors == [], errors
