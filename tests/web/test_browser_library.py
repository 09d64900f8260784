"""The anime library pages in a real browser (headless Debian chromium through Selenium)
against a real ``hathd run`` with ``[anime]`` on fake aniworld.to and s.to sites (real HTTP
servers on 127.0.0.1, in a thread of their own): search → add → the series page → tick
episodes → queue → the jobs in the API and the files on disk; the cover served by hathd;
follow; rescan.

The tests share one daemon and one browser and run in order. Screenshots for docs/web.md
are taken on the way.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select

from fakes.anime_site import FakeProviderSite, catalogue, open_fake_provider
from web.browser_support import (
    Hathd,
    TrioThread,
    browser,
    console_errors,
    screenshot,
    start_hathd,
    stop_hathd,
    wait_for,
)

__all__ = ["browser"]

PASSWORD = "a long admin password"
COVER_SIZE = (40, 60)


def cover_png() -> bytes:
    """A real small PNG (Pillow): a two-colour 40×60 cover."""
    image = Image.new("RGB", COVER_SIZE, (36, 84, 160))
    image.paste((230, 190, 60), (8, 8, 32, 30))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class ProviderSites(TrioThread):
    """The fake aniworld.to and s.to sites, the aniworld one with a cover for Frieren."""

    def __init__(self) -> None:
        self.aw = FakeProviderSite(series=catalogue())
        self.st = FakeProviderSite(
            prefix="/serie/stream", series={"frieren": catalogue()["frieren"]}
        )
        self.cover = cover_png()
        self.aw.covers["frieren"] = ("image/png", self.cover)
        super().__init__(partial(open_fake_provider, self.aw), partial(open_fake_provider, self.st))


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shots")


@pytest.fixture(scope="module")
def sites() -> Iterator[ProviderSites]:
    running = ProviderSites()
    with running:
        yield running


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("anime")


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, sites: ProviderSites, library: Path
) -> Iterator[Hathd]:
    config = (
        "[engine]\nworkers = 2\n\n[anime]\nenabled = true\n"
        f'library = "{library}"\naniworld_url = "{sites.aw.base_url}"\n'
        f'sto_url = "{sites.st.base_url}"\nhosters = ["vidoza", "voe"]\nrescan_interval = 0\n'
    )
    handle = start_hathd(tmp_path_factory.mktemp("hathd"), config)
    try:
        yield handle
    finally:
        stop_hathd(handle)


def series_api(node: Hathd, key: str) -> dict[str, Any]:
    with node.api() as api:
        reply = api.get(f"/api/v1/anime/{key}")
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data


def states(driver: WebDriver) -> dict[str, str]:
    """``{code: data-state}`` of the episode rows on the series page (read in one script: a
    live re-render may replace the rows at any time)."""
    found: dict[str, str] = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#seasons li')]"
        ".map((li) => [li.dataset.code, li.dataset.state]))"
    )
    return found


def ticked(driver: WebDriver) -> set[str]:
    """The codes of the ticked episodes that can still be queued (not on disk)."""
    codes: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#seasons input:checked:not([disabled])')]"
        ".map((box) => box.dataset.code)"
    )
    return set(codes)


def act(driver: WebDriver, element_id: str, *keys: str) -> bool:
    """Click the element (or send it ``keys``); :func:`wait_for` tries again when a live
    re-render replaced it meanwhile."""
    element = driver.find_element(By.ID, element_id)
    if keys:
        element.send_keys(*keys)
    else:
        element.click()
    return True


def test_setup_and_empty_library(browser: WebDriver, node: Hathd) -> None:
    browser.get(node.url + "/")
    wait_for(browser, lambda d: d.current_url.endswith("/setup"), "a new node asks for setup")
    for field in ("password", "password2"):
        browser.find_element(By.ID, field).send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#setup-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "logout"), "setup logs the admin in")
    browser.get(node.url + "/library")
    wait_for(
        browser,
        lambda d: "library is empty" in d.find_element(By.ID, "library-state").text,
        "an empty library says so",
    )


def test_search_add_and_cover(
    browser: WebDriver, node: Hathd, sites: ProviderSites, shots: Path
) -> None:
    browser.get(node.url + "/library")
    wait_for(browser, lambda d: d.find_element(By.ID, "live").text == "Live", "WebSocket open")
    keyword = browser.find_element(By.ID, "anime-keyword")
    keyword.send_keys("Frie")
    keyword.send_keys(Keys.ENTER)  # the form is usable from the keyboard
    hit = '#anime-hits li[data-key="frieren"][data-site="aniworld.to"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, hit), "the search lists Frieren")
    assert browser.find_elements(By.CSS_SELECTOR, '#anime-hits li[data-site="s.to"]')
    assert ("POST", "/ajax/search") in sites.aw.requests
    screenshot(browser, shots, "library-search")
    browser.find_element(By.CSS_SELECTOR, f"{hit} button.add").click()
    wait_for(
        browser,
        lambda d: "Open Frieren" in d.find_element(By.CSS_SELECTOR, hit).text,
        "the series is added",
    )
    tile = '#series li[data-key="frieren"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, tile), "the grid shows it")
    # films (season 0), four episodes of season 1 and two of season 2: all missing
    assert "7 missing" in browser.find_element(By.CSS_SELECTOR, tile).text
    with node.api() as api:
        listed = {s["key"]: s for s in api.get("/api/v1/anime").json()["series"]}
        assert (listed["frieren"]["missing"], listed["frieren"]["followed"]) == (7, False)
        # a series whose provider has no cover: added through the API
        api.post("/api/v1/anime", json={"ref": "acdc-live", "queue": False}).raise_for_status()

    # the cover is served by hathd itself (the CSP allows no other image source)
    def loaded(d: WebDriver, key: str) -> Any:
        img = d.find_element(By.CSS_SELECTOR, f'#series li[data-key="{key}"] img.cover')
        ok = d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        return img if ok else None

    browser.get(node.url + "/library")
    img = wait_for(browser, lambda d: loaded(d, "frieren"), "the cover is shown")
    assert img.get_attribute("src") == f"{node.url}/covers/frieren"
    width, height = browser.execute_script(
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img
    )
    assert (width, height) == COVER_SIZE
    with node.api() as api:
        cover = api.get("/covers/frieren")
        assert cover.status_code == 200
        assert cover.headers["content-type"] == "image/png"
        assert cover.content == sites.cover, "hathd serves the provider's image bytes"
        assert "img-src 'self' data:" in cover.headers["content-security-policy"]
        placeholder = api.get("/covers/acdc-live")
        assert placeholder.status_code == 200
        assert placeholder.headers["x-hathd-cover"] == "placeholder"
        assert placeholder.headers["content-type"].startswith("image/svg+xml")
        assert api.get("/covers/no-such-series").headers["x-hathd-cover"] == "placeholder"
    fetched = [p for _, p in sites.aw.requests if p.startswith("/public/img/cover/frieren")]
    assert len(fetched) == 1, "the cover was fetched from the provider once, then cached"
    # the series without a cover shows the placeholder image, and its hostile name as text
    wait_for(browser, lambda d: loaded(d, "acdc-live"), "the placeholder is shown")
    assert "AC/DC: ../Live" in browser.find_element(By.CSS_SELECTOR, "#series").text
    screenshot(browser, shots, "library")


def test_series_page_tick_and_queue(
    browser: WebDriver, node: Hathd, library: Path, shots: Path
) -> None:
    browser.get(node.url + "/library")
    link = wait_for(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#series li[data-key="frieren"] a'),
        "the tile links to the series",
    )[0]
    link.click()
    wait_for(browser, lambda d: d.current_url.endswith("/library/frieren"), "the series page")
    wait_for(browser, lambda d: len(states(d)) == 7, "the episodes are listed")
    wait_for(browser, lambda d: d.find_element(By.ID, "live").text == "Live", "WebSocket open")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Frieren"
    legends = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#seasons legend")]
    assert [x.split(" — ")[0] for x in legends] == ["Films and specials", "Season 1", "Season 2"]
    assert set(states(browser).values()) == {"missing"}
    cover = browser.find_element(By.ID, "series-cover")
    assert browser.execute_script("return arguments[0].naturalWidth", cover) == COVER_SIZE[0]

    # tick S01E01 with the mouse and S01E02 from the keyboard, German subtitles
    wait_for(browser, lambda d: act(d, "ep-S01E01"), "S01E01 clicked")
    wait_for(browser, lambda d: act(d, "ep-S01E02", Keys.SPACE), "S01E02 ticked by key")
    assert ticked(browser) == {"S01E01", "S01E02"}
    Select(browser.find_element(By.ID, "language")).select_by_value("de-sub")
    browser.find_element(By.ID, "queue-selected").click()
    flash = browser.find_element(By.ID, "flash")
    wait_for(browser, lambda d: "2 episode(s) queued" in flash.text, "queued")

    # the jobs are in the API: exactly the ticked episodes, in the chosen language
    with node.api() as api:
        jobs = api.get("/api/v1/jobs", params={"kind": "anime-episode"}).json()["jobs"]
    assert sorted((j["params"]["season"], j["params"]["episode"]) for j in jobs) == [(1, 1), (1, 2)]
    for job in jobs:
        assert {c["language"] for c in job["params"]["candidates"]} == {"de-sub"}
    linked = {e["code"]: e["job"] for e in series_api(node, "frieren")["episodes"]}
    assert {code for code, job in linked.items() if job} == {"S01E01", "S01E02"}

    # the downloads run; the page follows live until both are on disk
    wait_for(
        browser,
        lambda d: states(d).get("S01E01") == "present" and states(d).get("S01E02") == "present",
        "the queued episodes land and the page shows them on disk",
    )
    season = library / "Frieren (2023)" / "Season 01"
    assert sorted(p.name for p in season.iterdir()) == [
        "Frieren - S01E01 - Episode 1.mp4",
        "Frieren - S01E02 - Episode 2.mp4",
    ]
    box, row = browser.execute_script(
        "const b = document.getElementById('ep-S01E01');"
        "return [[b.checked, b.disabled], b.closest('li').textContent];"
    )
    assert box == [True, True], "on disk: ticked and not queueable"
    assert "on disk" in row, "the state is a word, not only a colour"

    # select missing ticks exactly what the API calls missing
    browser.find_element(By.ID, "select-missing").click()
    with node.api() as api:
        missing = api.get("/api/v1/anime/missing", params={"key": "frieren"}).json()["missing"]
    assert ticked(browser) == {e["code"] for e in missing}
    assert ticked(browser) == {"S00E01", "S01E03", "S01E04", "S02E01", "S02E02"}
    browser.set_window_size(1280, 1500)  # the whole page: every season
    try:
        screenshot(browser, shots, "series")
    finally:
        browser.set_window_size(1280, 900)
    browser.find_element(By.ID, "select-none").click()
    assert ticked(browser) == set()


def test_follow_toggle_and_rescan(browser: WebDriver, node: Hathd, library: Path) -> None:
    browser.get(node.url + "/library/frieren")
    follow = wait_for(
        browser,
        lambda d: (
            d.find_element(By.ID, "follow").text == "Follow" and d.find_element(By.ID, "follow")
        ),
        "the series is not followed",
    )
    assert follow.get_attribute("aria-pressed") == "false"
    follow.click()
    wait_for(
        browser,
        lambda d: d.find_element(By.ID, "follow").get_attribute("aria-pressed") == "true",
        "the button says followed",
    )
    assert series_api(node, "frieren")["series"]["followed"] is True
    assert "Following" in browser.find_element(By.ID, "follow").text
    browser.find_element(By.ID, "follow").click()
    wait_for(
        browser,
        lambda d: d.find_element(By.ID, "follow").get_attribute("aria-pressed") == "false",
        "unfollowed",
    )
    assert series_api(node, "frieren")["series"]["followed"] is False

    # a file copied in by hand is found by the rescan, and the page follows
    (library / "Frieren (2023)" / "Season 02").mkdir()
    (library / "Frieren (2023)" / "Season 02" / "frieren.s02e01.mkv").write_bytes(b"x")
    browser.find_element(By.ID, "rescan").click()
    wait_for(
        browser,
        lambda d: "Scan done" in d.find_element(By.ID, "rescan-state").text,
        "the rescan reports",
    )
    assert "1 matched" in browser.find_element(By.ID, "rescan-state").text
    wait_for(browser, lambda d: states(d).get("S02E01") == "present", "the page shows the file")
    # a phone-sized window: the library pages fit its width (no sideways scrolling)
    browser.set_window_size(390, 844)
    try:
        for path in ("/library", "/library/frieren"):
            browser.get(node.url + path)
            wait_for(browser, lambda d: d.find_element(By.ID, "live").text == "Live", "loaded")
            overflow = browser.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{path} is {overflow} px wider than a 390 px window"
    finally:
        browser.set_window_size(1280, 900)
    errors = console_errors(browser)
    assert errors == [], errors
