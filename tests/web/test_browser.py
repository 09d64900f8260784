"""The web pages in a real browser (headless Debian chromium through Selenium) against a real
``hathd run`` process: first setup, queue reorder by drag and by keyboard, live progress of a
real download, settings with a validation error and a backup restore, logout, login and the
wrong-password lockout.

The tests of this module share one daemon and one browser and run in order (each starts from
where the previous one left the node). Screenshots for docs/web.md are taken on the way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from web.browser_support import (
    Hathd,
    SlowFiles,
    browser,
    console_errors,
    screenshot,
    start_hathd,
    stop_hathd,
    texts,
    wait_for,
)

__all__ = ["browser"]

PASSWORD = "a long admin password"
CONFIG = "[engine]\nworkers = 1\n"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shots")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hathd]:
    handle = start_hathd(tmp_path_factory.mktemp("hathd"), CONFIG)
    try:
        yield handle
    finally:
        stop_hathd(handle)


@pytest.fixture(scope="module")
def slow() -> Iterator[SlowFiles]:
    # 12 MiB in 64 KiB writes 40 ms apart: about 8 s of transfer, time to watch it move
    with SlowFiles(size=12 * 1024 * 1024, chunk=64 * 1024, pause=0.04) as server:
        yield server


def pending_order(driver: WebDriver) -> list[str]:
    return [
        li.get_attribute("data-id") or ""
        for li in driver.find_elements(By.CSS_SELECTOR, "#pending > li")
    ]


def press(driver: WebDriver, selector: str, key: str) -> bool:
    """Send ``key`` to the element at ``selector`` (raises StaleElementReference when the
    element was replaced meanwhile; :func:`wait_for` then tries again)."""
    driver.find_element(By.CSS_SELECTOR, selector).send_keys(key)
    return True


def api_pending(node: Hathd) -> list[str]:
    with node.api() as api:
        reply = api.get("/api/v1/jobs", params={"state": "queued,waiting,paused"})
        reply.raise_for_status()
        return [j["id"] for j in reply.json()["jobs"]]


def test_first_setup(browser: WebDriver, node: Hathd, shots: Path) -> None:
    browser.get(node.url + "/")
    wait_for(browser, lambda d: d.current_url.endswith("/setup"), "/ sends a new node to /setup")
    screenshot(browser, shots, "setup")
    browser.find_element(By.ID, "password").send_keys("too short")
    browser.find_element(By.ID, "password2").send_keys("too short")
    browser.find_element(By.CSS_SELECTOR, "#setup-form button[type=submit]").click()
    error = browser.find_element(By.ID, "setup-error")
    wait_for(browser, lambda d: error.is_displayed(), "a short password is refused")
    assert "10 characters" in error.text
    for field in ("password", "password2"):
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#setup-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "logout"), "setup logs the admin in")
    wait_for(
        browser,
        lambda d: "engine" in d.find_element(By.ID, "subsystems").text,
        "the overview lists the subsystems",
    )
    assert browser.find_element(By.CSS_SELECTOR, ".who").text == "admin"
    wait_for(
        browser, lambda d: "not enabled" in d.find_element(By.ID, "fanfic").text, "fanfic is off"
    )
    screenshot(browser, shots, "overview")
    # the setup page is gone once an admin exists
    browser.get(node.url + "/setup")
    wait_for(browser, lambda d: d.current_url.endswith("/login"), "/setup is closed after setup")
    browser.get(node.url + "/")
    errors = console_errors(browser)
    assert errors == [], errors


def test_queue_reorder_by_drag_and_keyboard(
    browser: WebDriver, node: Hathd, slow: SlowFiles, shots: Path
) -> None:
    with node.api() as api:
        api.post("/api/v1/queue/pause").raise_for_status()
        reply = api.post(
            "/api/v1/jobs", json={"jobs": [{"url": f"{slow.url}?n={i}"} for i in range(4)]}
        )
        reply.raise_for_status()
    ids = [j["job"]["id"] for j in reply.json()["jobs"]]
    assert api_pending(node) == ids
    browser.get(node.url + "/queue")
    wait_for(browser, lambda d: pending_order(d) == ids, "the queue page lists the pending jobs")
    positions = texts(browser.find_elements(By.CSS_SELECTOR, "#pending .pos"))
    assert positions == ["1.", "2.", "3.", "4."]
    screenshot(browser, shots, "queue-pending")

    # drag the last job's handle with the mouse (real pointer input through WebDriver
    # actions) onto the top quarter of the first row, in steps as a hand would move
    drag = browser.find_element(By.CSS_SELECTOR, f'#pending li[data-id="{ids[3]}"] .handle')
    onto = browser.find_element(By.CSS_SELECTOR, f'#pending li[data-id="{ids[0]}"]')
    quarter = onto.size["height"] // 4
    (
        ActionChains(browser)
        .click_and_hold(drag)
        .move_by_offset(0, -10)
        .move_to_element_with_offset(onto, 0, quarter)
        .move_to_element_with_offset(onto, 0, -quarter)
        .pause(0.2)
        .release()
        .perform()
    )
    dragged = [ids[3], ids[0], ids[1], ids[2]]
    wait_for(browser, lambda d: api_pending(node) == dragged, "the drag reordered the queue")
    wait_for(browser, lambda d: pending_order(d) == dragged, "the page shows the new order")

    # keyboard: focus the first job's handle (ids[3]), ArrowDown twice, then ArrowUp
    for key, expected in (
        (Keys.ARROW_DOWN, [ids[0], ids[3], ids[1], ids[2]]),
        (Keys.ARROW_DOWN, [ids[0], ids[1], ids[3], ids[2]]),
        (Keys.ARROW_UP, [ids[0], ids[3], ids[1], ids[2]]),
    ):
        # a live re-render may replace the row between finding and pressing: press again then
        wait_for(
            browser,
            lambda d, k=key: press(d, f'#pending li[data-id="{ids[3]}"] .handle', k),
            "key pressed",
        )
        wait_for(browser, lambda d, e=expected: api_pending(node) == e, "the key moved the job")
        wait_for(browser, lambda d, e=expected: pending_order(d) == e, "the page follows")
        wait_for(
            browser,
            lambda d: (d.switch_to.active_element.get_attribute("aria-label") or "").startswith(
                f"Move {slow.url}?n=3 "
            ),
            "the moved job's handle keeps the focus",
        )
    wait_for(
        browser,
        lambda d: (
            texts(d.find_elements(By.CSS_SELECTOR, "#pending .pos")) == ["1.", "2.", "3.", "4."]
        ),
        "positions are renumbered",
    )
    # clean up: the next test downloads one job alone
    with node.api() as api:
        for job_id in ids:
            api.delete(f"/api/v1/jobs/{job_id}").raise_for_status()
        api.post("/api/v1/queue/resume").raise_for_status()
    wait_for(browser, lambda d: pending_order(d) == [], "removed jobs leave the page live")


def test_live_progress_of_a_real_download(
    browser: WebDriver, node: Hathd, slow: SlowFiles, shots: Path
) -> None:
    browser.get(node.url + "/queue")
    wait_for(browser, lambda d: d.find_element(By.ID, "live").text == "Live", "WebSocket open")
    with node.api() as api:
        reply = api.post("/api/v1/jobs", json={"url": slow.url})
        reply.raise_for_status()
    job_id = reply.json()["job"]["id"]
    row = f'#active li[data-id="{job_id}"]'

    def percent(d: WebDriver) -> float | None:
        bars = d.find_elements(By.CSS_SELECTOR, f"{row} progress")
        value = bars[0].get_attribute("value") if bars else None
        return float(value) if value else None

    first = wait_for(
        browser, lambda d: (p := percent(d)) is not None and 0 < p < 100 and p, "progress shows"
    )
    wait_for(browser, lambda d: (p := percent(d)) is not None and first < p < 100, "progress moves")
    text = browser.find_element(By.CSS_SELECTOR, row).text
    assert re.search(r"\d+\.\d % · [\d.]+ (KiB|MiB) of 12\.0 MiB", text), text
    assert re.search(r"speed [\d.]+ (KiB|MiB)/s", text), text
    assert re.search(r"ETA \d+ (s|min)", text), text
    screenshot(browser, shots, "queue-progress")
    wait_for(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, f'#done li[data-id="{job_id}"]'),
        "the finished download moves to Completed",
    )
    assert not browser.find_elements(By.CSS_SELECTOR, row)
    done = browser.find_element(By.CSS_SELECTOR, f'#done li[data-id="{job_id}"]').text
    assert "big.bin" in done


def test_settings_validation_error_and_backup_restore(
    browser: WebDriver, node: Hathd, shots: Path
) -> None:
    browser.get(node.url + "/settings")
    workers = wait_for(
        browser, lambda d: d.find_elements(By.ID, "f-engine-workers"), "the form is built"
    )[0]
    assert workers.get_attribute("value") == "1"
    # the keys a reload cannot apply are marked, as the server (hathd.reload) lists them
    with node.api() as api:
        restart = set(api.get("/api/v1/config/restart").json()["keys"])
    assert "admin.host" in restart
    assert "engine.workers" not in restart

    def label(key: str) -> str:
        return str(browser.find_element(By.CSS_SELECTOR, f'label[for="f-{key}"]').text)

    assert "needs restart" in label("admin-host")
    assert "needs restart" in label("daemon-log_level")
    assert "needs restart" not in label("engine-workers")
    assert "needs restart" not in label("daemon-shutdown_grace")
    original = node.config_path.read_text()

    workers.clear()
    workers.send_keys("-3")
    browser.find_element(By.CSS_SELECTOR, "#config-form button[type=submit]").click()
    error = browser.find_element(By.ID, "f-engine-workers-err")
    wait_for(browser, lambda d: error.is_displayed(), "the server's problem shows at the field")
    assert error.text
    assert workers.get_attribute("aria-invalid") == "true"
    assert node.config_path.read_text() == original, "an invalid configuration is not written"
    screenshot(browser, shots, "settings-error")

    workers = browser.find_element(By.ID, "f-engine-workers")
    workers.clear()
    workers.send_keys("2")
    browser.find_element(By.CSS_SELECTOR, "#config-form button[type=submit]").click()
    flash = browser.find_element(By.ID, "flash")
    wait_for(browser, lambda d: flash.is_displayed() and "Saved" in flash.text, "saved")
    with node.api() as api:
        assert api.get("/api/v1/config").json()["engine"]["workers"] == 2
    wait_for(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#backups button.restore"), "a backup"
    )
    browser.find_element(By.CSS_SELECTOR, "#backups button.restore").click()
    wait_for(browser, lambda d: "restored" in d.find_element(By.ID, "flash").text, "restored")
    with node.api() as api:
        assert api.get("/api/v1/config").json()["engine"]["workers"] == 1
    wait_for(
        browser,
        lambda d: d.find_element(By.ID, "f-engine-workers").get_attribute("value") == "1",
        "the form shows the restored value",
    )
    screenshot(browser, shots, "settings")

    # an API key: created (shown once), listed, usable, revoked
    browser.find_element(By.ID, "key-name").send_keys("backup script")
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    shown = wait_for(
        browser,
        lambda d: d.find_element(By.CSS_SELECTOR, "#key-new code").text,
        "the new key is shown",
    )
    wait_for(browser, lambda d: "backup script" in d.find_element(By.ID, "keys").text, "listed")
    with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {shown}"}) as api:
        assert api.get("/api/v1/queue").status_code == 200
        browser.find_element(
            By.XPATH, "//table[@id='keys']//tr[td[1][text()='backup script']]//button"
        ).click()
        wait_for(
            browser, lambda d: "backup script" not in d.find_element(By.ID, "keys").text, "revoked"
        )
        assert api.get("/api/v1/queue").status_code == 401
    # the refused PUT is the only error the console saw
    errors = console_errors(browser)
    assert all("/api/v1/config - " in e and "status of 400" in e for e in errors), errors


def test_other_pages_render(browser: WebDriver, node: Hathd, slow: SlowFiles, shots: Path) -> None:
    browser.get(node.url + "/work")
    wait_for(browser, lambda d: d.find_element(By.ID, "live").text == "Live", "WebSocket open")
    browser.find_element(By.ID, "add-target").send_keys(f"{slow.url}?from=form")
    browser.find_element(By.CSS_SELECTOR, "#add-form button[type=submit]").click()
    wait_for(
        browser, lambda d: "big.bin?from=form" in d.find_element(By.ID, "recent").text, "added"
    )
    wait_for(
        browser, lambda d: "big.bin" in d.find_element(By.ID, "recent").text, "recent work listed"
    )
    with node.api() as api:
        uploads = api.get("/api/v1/uploads")
    expected = "No upload yet." if uploads.status_code == 200 else "not enabled"
    wait_for(
        browser,
        lambda d: expected in d.find_element(By.ID, "batches-state").text,
        "the upload batches section says what there is",
    )
    screenshot(browser, shots, "work")
    # a phone-sized window: everything fits its width (no sideways scrolling)
    browser.set_window_size(390, 844)
    try:
        for path in ("/", "/queue", "/work", "/settings"):
            browser.get(node.url + path)
            wait_for(
                browser,
                lambda d, p=path: p == "/settings" or d.find_element(By.ID, "live").text == "Live",
                "loaded",
            )
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} is {overflow} px wider than a 390 px window"
        browser.get(node.url + "/queue")
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#done li"), "jobs listed")
        screenshot(browser, shots, "queue-narrow")
    finally:
        browser.set_window_size(1280, 900)
    browser.get(node.url + "/library")
    state = browser.find_element(By.ID, "library-state")
    wait_for(browser, lambda d: "not enabled" in state.text, "the library says it is off")
    assert not browser.find_element(By.ID, "anime-search").is_displayed()
    browser.get(node.url + "/library/frieren")
    wait_for(
        browser,
        lambda d: "not in the library" in d.find_element(By.ID, "series-state").text,
        "a series page without the library says so",
    )
    errors = console_errors(browser)
    assert errors == [], errors


def test_logout_login_and_lockout(browser: WebDriver, node: Hathd, shots: Path) -> None:
    browser.get(node.url + "/")
    wait_for(browser, lambda d: d.find_elements(By.ID, "logout"), "logged in")
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, lambda d: d.current_url.endswith("/login"), "logout lands on /login")
    browser.get(node.url + "/queue")
    wait_for(browser, lambda d: d.current_url.endswith("/login"), "pages need a login again")

    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "logout"), "login with the right password")
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, lambda d: d.current_url.endswith("/login"), "logged out again")
    screenshot(browser, shots, "login")

    error = browser.find_element(By.ID, "login-error")
    password = browser.find_element(By.ID, "password")
    for attempt in range(12):
        password.clear()
        password.send_keys(f"wrong password {attempt}")
        browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
        wait_for(
            browser,
            lambda d: "Wrong" in error.text or "locked out" in error.text,
            "the reason is shown",
        )
        if "locked out" in error.text:
            break
        # let the page show the next reply, not this one's
        browser.execute_script("arguments[0].hidden = true; arguments[0].textContent = ''", error)
    else:
        pytest.fail("twelve wrong passwords never locked the login out")
    assert attempt >= 5, "the first wrong passwords are refused without a lockout"
    screenshot(browser, shots, "login-locked")
    # locked out: even the right password is refused until the lock ends
    password.clear()
    password.send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    browser.execute_script("arguments[0].hidden = true; arguments[0].textContent = ''", error)
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait_for(browser, lambda d: "locked out" in error.text, "the lock holds for the right password")
    assert browser.current_url.endswith("/login")
