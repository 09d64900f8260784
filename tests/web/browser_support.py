"""Browser-test support: a real ``hathd run`` process, headless Debian chromium driven by
Selenium through chromedriver, a slow local HTTP file server, and screenshots.

The browser is the Debian ``chromium`` + ``chromium-driver`` pair (scripts/system-packages).
A missing browser or driver is a failure, never a skip.

Screenshots go to ``$HATHD_SCREENSHOTS`` when set (``nox -s screenshots`` points it at
``docs/images/web``), else to the test's temporary directory.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from selenium import webdriver
from selenium.common.exceptions import (
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from conftest import daemon_env

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 60.0
"""Seconds a browser wait may take (a loaded 2-core machine is slow, never a failure)."""


@attrs.define
class Hathd:
    """A ``python -m hathd --state-dir S --config C run`` process (the README's command)."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    config_path: Path
    log_path: Path
    url: str = ""

    @property
    def token(self) -> str:
        return (self.state_dir / "admin.token").read_text().strip()

    def api(self) -> httpx.Client:
        """A client with the node's admin token (checks what the pages did)."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_hathd(tmp: Path, config_text: str) -> Hathd:
    """Start hathd on ``config_text`` (written to ``tmp/hathd.toml``) and wait until its
    TCP admin URL answers ``/healthz``."""
    state = tmp / "state"
    config_path = tmp / "hathd.toml"
    config_path.write_text(config_text)
    log_path = tmp / "hathd.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hathd",
                "--state-dir",
                str(state),
                "--config",
                str(config_path),
                "run",
            ],
            env=daemon_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    node = Hathd(proc, state, config_path, log_path)
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"hathd exited with {proc.returncode}:\n{node.log()}")
        url_file = state / "admin.url"
        if url_file.exists() and url_file.read_text().strip():
            node.url = url_file.read_text().strip().rstrip("/")
            try:
                if httpx.get(node.url + "/healthz", timeout=5).status_code == 200:
                    return node
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"hathd did not start:\n{node.log()}")
        time.sleep(0.1)


def stop_hathd(node: Hathd) -> None:
    """SIGTERM, then kill after 30 s."""
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            node.proc.wait(30)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait(10)


def open_browser(width: int = 1280, height: int = 900) -> WebDriver:
    """Headless chromium through chromedriver; fails (never skips) when either is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.access(p, os.X_OK))]
    if missing:
        pytest.fail(
            f"browser tests need the Debian chromium and chromium-driver packages: "
            f"missing {', '.join(missing)} (scripts/system-packages)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
        "--lang=en-GB",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    return driver


def wait_for(driver: WebDriver, check: Callable[[WebDriver], Any], message: str) -> Any:
    """``check``'s first truthy result within :data:`WAIT` seconds (else TimeoutException)."""
    return WebDriverWait(
        driver,
        WAIT,
        poll_frequency=0.1,
        ignored_exceptions=(
            StaleElementReferenceException,
            NoSuchElementException,
            # a live re-render may swap the element while a key is sent: try again
            ElementNotInteractableException,
        ),
    ).until(check, message)


def texts(elements: list[WebElement]) -> list[str]:
    return [e.text for e in elements]


def screenshot(driver: WebDriver, tmp: Path, name: str) -> Path:
    """Save a PNG of the page as ``<name>.png`` (see the module docstring for where)."""
    folder = Path(os.environ.get("HATHD_SCREENSHOTS") or tmp / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def console_errors(driver: WebDriver) -> list[str]:
    """The browser console's SEVERE entries (CSP refusals, script errors), less the 404s of
    API probes for subsystems that are off (the pages ask, then say "not enabled")."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e.get("level") == "SEVERE"
        and "the server responded with a status of 404" not in e["message"]
    ]


class SlowFiles:
    """A local HTTP server (127.0.0.1, free port) serving ``/big.bin``: ``size`` bytes of
    zeros in ``chunk``-byte writes ``pause`` seconds apart, with a Content-Length."""

    def __init__(self, size: int, chunk: int, pause: float) -> None:
        self.size, self.chunk, self.pause = size, chunk, pause
        self.stopping = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._head()

            def _head(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(outer.size))
                self.end_headers()

            def do_GET(self) -> None:
                self._head()
                sent = 0
                block = b"\0" * outer.chunk
                try:
                    while sent < outer.size and not outer.stopping.is_set():
                        n = min(outer.chunk, outer.size - sent)
                        self.wfile.write(block[:n])
                        self.wfile.flush()
                        sent += n
                        outer.stopping.wait(outer.pause)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/big.bin"

    def __enter__(self) -> SlowFiles:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class TrioThread:
    """Fake remote sites (async context managers that serve on 127.0.0.1) entered in a Trio
    loop of their own thread, for the synchronous browser tests; left again on exit."""

    def __init__(self, *sites: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self.sites = sites
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._serve,), daemon=True)

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with AsyncExitStack() as stack:
            for site in self.sites:
                await stack.enter_async_context(site())
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> TrioThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fake sites did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        token, stop = self._token, self._stop
        assert token is not None
        assert stop is not None
        token.run_sync_soon(stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless chromium for the whole module (chromium is heavy on a small machine)."""
    driver = open_browser()
    try:
        yield driver
    finally:
        driver.quit()
