"""The household additions in a real browser (headless Debian chromium through Selenium)
against a real ``hathd run``: the overview's media-server card and the settings page's
"Send test" button, whose message reaches a local Apprise ``json://`` receiver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from fanfic.support import Receiver, free_port
from web.browser_support import (
    Hathd,
    browser,
    console_errors,
    start_hathd,
    stop_hathd,
    wait_for,
)

__all__ = ["browser"]

PASSWORD = "a long admin password"


@pytest.fixture
def node(tmp_path: Path, receiver: Receiver) -> Iterator[Hathd]:
    config = (
        "[media_servers.servers.living-room]\n"
        f'kind = "jellyfin"\nurl = "http://127.0.0.1:{free_port()}"\ntoken = "k"\n'
        f'[notify.job_failed]\nurls = ["{receiver.url}"]\n'
    )
    handle = start_hathd(tmp_path, config)
    try:
        yield handle
    finally:
        stop_hathd(handle)


def test_media_card_and_send_test_button(
    browser: WebDriver, node: Hathd, receiver: Receiver
) -> None:
    browser.get(node.url + "/")
    wait_for(browser, lambda d: d.current_url.endswith("/setup"), "a new node opens /setup")
    for field in ("password", "password2"):
        browser.find_element(By.ID, field).send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#setup-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "logout"), "setup logs the admin in")
    wait_for(
        browser,
        lambda d: "living-room (jellyfin)" in d.find_element(By.ID, "media").text,
        "the overview shows the media server",
    )
    assert "0 refreshed, 0 failed" in browser.find_element(By.ID, "media").text

    browser.get(node.url + "/settings")
    Select(
        wait_for(browser, lambda d: d.find_element(By.ID, "notify-kind"), "the form")
    ).select_by_value("job_failed")
    browser.find_element(By.CSS_SELECTOR, "#notify-test button[type=submit]").click()
    result = browser.find_element(By.ID, "notify-result")
    wait_for(browser, lambda d: result.text == "job_failed: sent", "the test is reported sent")
    with receiver.cond:
        assert [n["title"] for n in receiver.received] == ["hathd test notification"]
    Select(browser.find_element(By.ID, "notify-kind")).select_by_value("hath_node")
    browser.find_element(By.CSS_SELECTOR, "#notify-test button[type=submit]").click()
    wait_for(
        browser,
        lambda d: result.text == "hath_node: failed (no URLs)",
        "a kind without URLs is reported",
    )
    errors = console_errors(browser)
    assert errors == [], errors
