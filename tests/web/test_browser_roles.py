"""Two household users in two real browsers (headless Debian chromium through Selenium) against
one ``hathd run``: a viewer who cannot reach the settings (no link, the URL refused) asks for a
story, the request waits; an operator approves it in a second browser session, the story's job
is queued with the operator as its submitter on the viewer's behalf, and the viewer's page
shows the decision. Also the users page of the admin, and the log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from web.browser_support import (
    Hathd,
    browser,
    console_errors,
    open_browser,
    screenshot,
    start_hathd,
    stop_hathd,
    wait_for,
)

__all__ = ["browser"]

ADMIN_PASSWORD = "a long admin password"
PASSWORD = "a household password"
STORY = "https://www.fanfiction.net/s/1/1/"
CONFIG = "[engine]\nworkers = 1\n\n[fanfic]\nenabled = true\n"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shots")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hathd]:
    handle = start_hathd(tmp_path_factory.mktemp("hathd"), CONFIG)
    try:
        with httpx.Client(base_url=handle.url, timeout=30) as local:
            claimed = local.post("/api/v1/auth/setup", json={"password": ADMIN_PASSWORD})
            assert claimed.status_code == 201, claimed.text
        with handle.api() as api:
            # nothing approved here may reach the Internet: the queue holds every job
            assert api.post("/api/v1/queue/pause").status_code == 200
        yield handle
    finally:
        stop_hathd(handle)


@pytest.fixture(scope="module")
def second_browser() -> Iterator[WebDriver]:
    driver = open_browser()
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: WebDriver, node: Hathd, username: str, password: str) -> None:
    driver.get(node.url + "/login")
    user = driver.find_element(By.ID, "username")
    user.clear()
    user.send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "logout"), f"{username} is logged in")
    assert driver.find_element(By.CSS_SELECTOR, ".who").text == username


def nav_links(driver: WebDriver) -> list[str]:
    return [
        str(a.get_attribute("href")).rsplit("/", 1)[-1]
        for a in driver.find_elements(By.CSS_SELECTOR, "header nav a")
    ]


def test_admin_adds_users_on_the_users_page(browser: WebDriver, node: Hathd, shots: Path) -> None:
    log_in(browser, node, "admin", ADMIN_PASSWORD)
    assert {"requests", "log", "users", "settings"} <= set(nav_links(browser))
    browser.find_element(By.CSS_SELECTOR, 'header nav a[href="/users"]').click()
    for username, role in (("vera", "viewer"), ("olga", "operator")):
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#users tbody tr"), "listed")
        browser.find_element(By.ID, "user-name").send_keys(username)
        browser.find_element(By.ID, "user-password").send_keys(PASSWORD)
        Select(browser.find_element(By.ID, "user-role")).select_by_value(role)
        browser.find_element(By.CSS_SELECTOR, "#user-form button[type=submit]").click()
        wait_for(
            browser,
            lambda d, u=username: d.find_elements(By.CSS_SELECTOR, f'#users tr[data-user="{u}"]'),
            f"{username} listed",
        )
    # the last admin cannot be demoted: the page shows the refusal and keeps the role
    Select(browser.find_element(By.ID, "role-admin")).select_by_value("viewer")
    flash = browser.find_element(By.ID, "flash")
    wait_for(browser, lambda d: "last admin" in flash.text, "the refusal is shown")
    wait_for(
        browser,
        lambda d: Select(d.find_element(By.ID, "role-admin")).first_selected_option.text == "admin",
        "the role stays admin",
    )
    screenshot(browser, shots, "users")
    with node.api() as api:
        users = {u["username"]: u["role"] for u in api.get("/api/v1/users").json()["users"]}
    assert users == {"admin": "admin", "vera": "viewer", "olga": "operator"}
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, lambda d: d.current_url.endswith("/login"), "logged out")
    errors = [e for e in console_errors(browser) if "/api/v1/users/admin" not in e]
    assert errors == [], errors  # the 409 of the refused demotion is the only one


def test_viewer_cannot_reach_settings_and_requests_a_story(
    browser: WebDriver, node: Hathd, shots: Path
) -> None:
    log_in(browser, node, "vera", PASSWORD)
    links = nav_links(browser)
    assert "settings" not in links
    assert "users" not in links
    assert "log" not in links
    assert "requests" in links
    browser.get(node.url + "/settings")
    refused = wait_for(browser, lambda d: d.find_element(By.ID, "refused"), "settings refused")
    assert "viewer" in refused.text
    assert not browser.find_elements(By.ID, "config-form")
    screenshot(browser, shots, "settings-refused")
    with httpx.Client(base_url=node.url, timeout=30) as anonymous:
        # the browser's own session cookie, sent by a plain client: the API says 403 too
        cookie = browser.get_cookie("hathd_session")
        assert cookie is not None
        anonymous.cookies.set("hathd_session", cookie["value"])
        assert anonymous.get("/api/v1/config").status_code == 403

    browser.get(node.url + "/requests")
    Select(browser.find_element(By.ID, "request-kind")).select_by_value("story")
    browser.find_element(By.ID, "request-target").send_keys(STORY)
    browser.find_element(By.ID, "request-note").send_keys("the one from the holidays")
    browser.find_element(By.CSS_SELECTOR, "#request-form button[type=submit]").click()
    row = '#requests tbody tr[data-state="pending"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the request is listed")
    text = browser.find_element(By.CSS_SELECTOR, row).text
    assert "pending" in text.lower()
    assert "vera" in text
    assert not browser.find_elements(By.CSS_SELECTOR, "#requests button.approve")
    assert "waits" in browser.find_element(By.ID, "flash").text
    screenshot(browser, shots, "request-pending")
    # finding a series to ask for: this node has no anime library, and says so
    browser.find_element(By.ID, "find-text").send_keys("frieren")
    browser.find_element(By.CSS_SELECTOR, "#find-form button[type=submit]").click()
    wait_for(
        browser,
        lambda d: "not enabled" in d.find_element(By.ID, "find-state").text,
        "the search says the library is off",
    )
    with node.api() as api:
        assert api.get("/api/v1/jobs").json()["total"] == 0, "nothing runs before approval"
    errors = [e for e in console_errors(browser) if not e.startswith(node.url + "/settings ")]
    assert errors == [], errors  # the refused /settings (403) is the only one


def test_operator_approves_in_a_second_browser(
    browser: WebDriver, second_browser: WebDriver, node: Hathd, shots: Path
) -> None:
    operator = second_browser
    log_in(operator, node, "olga", PASSWORD)
    links = nav_links(operator)
    assert "settings" not in links
    assert "users" not in links
    assert "log" in links
    operator.get(node.url + "/requests")
    approve = wait_for(
        operator,
        lambda d: d.find_element(By.CSS_SELECTOR, "#requests button.approve"),
        "the operator sees the pending request with Approve",
    )
    assert STORY in operator.find_element(By.ID, "requests").text
    approve.click()
    wait_for(
        operator,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#requests tbody tr[data-state="approved"]'),
        "approved",
    )
    assert "olga" in operator.find_element(By.CSS_SELECTOR, "#requests tbody tr").text
    screenshot(operator, shots, "request-approved")

    with node.api() as api:
        jobs = api.get("/api/v1/jobs").json()["jobs"]
    assert [
        (j["kind"], j["submitted_by"]["user"], j["submitted_by"]["on_behalf"]) for j in jobs
    ] == [("fanfic", "olga", "vera")]
    # the viewer's page picks the decision up by itself
    wait_for(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#requests tbody tr[data-state="approved"]'),
        "the viewer sees the approval",
    )
    # the queue shows who submitted the job; the log who did what
    operator.get(node.url + "/queue")
    wait_for(
        operator,
        lambda d: "by olga" in d.find_element(By.ID, "pending").text,
        "the queued job names its submitter",
    )
    operator.get(node.url + "/log")
    wait_for(
        operator,
        lambda d: "approval of request 1 asked by vera" in d.find_element(By.ID, "audit").text,
        "the log shows the approval",
    )
    screenshot(operator, shots, "log")
    assert console_errors(operator) == []
    assert console_errors(browser) == []
