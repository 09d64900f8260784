"""Credentials from ``NAME_file`` keys and the system keyring; never stored, always redacted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
import trio
from keyring.backend import KeyringBackend
from keyring.backends import fail

from fakes.imagehost_setup import VIPR_PASS, VIPR_USER, services_config
from fakes.imagehost_stack import upload_stack
from fakes.imagehosts import FakePixhost, FakeVipr, content_id
from hathd.engine.api import JobState
from hathd.errors import PermanentError
from hathd.recipes.config import RecipesConfig, ServiceConfig
from hathd.recipes.credentials import KeyringUnavailableError, keyring_service
from hathd.recipes.loader import configured_recipes
from hathd.recipes.redact import redact
from hathd.recipes.uploader import Uploader


class MemoryKeyring(KeyringBackend):
    """A keyring backend holding passwords in a dict (the ``keyring`` library's backend API:
    https://github.com/jaraco/keyring#writing-your-own-backend)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}
        self.asked: list[tuple[str, str]] = []

    def get_password(self, service: str, username: str) -> str | None:
        self.asked.append((service, username))
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        del self.passwords[(service, username)]


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    before = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(before)


def vipr_config(base_url: str, **settings: object) -> RecipesConfig:
    config = services_config(vipr_im=base_url)
    config.services["vipr.im"] = ServiceConfig(base_url=base_url, **settings)  # type: ignore[arg-type]
    return config


async def upload_one(config: RecipesConfig, path: Path) -> str:
    up = Uploader(configured_recipes(config), config, timeout=30.0)
    try:
        with trio.fail_after(30):
            return (await up.session("vipr.im").upload(path)).url
    finally:
        await up.aclose()


async def test_password_from_a_file_logs_in_and_is_never_stored(
    vipr: FakeVipr, images: list[Path], tmp_path: Path
) -> None:
    secret = tmp_path / "vipr.pass"
    secret.write_text(VIPR_PASS + "\n\nignored second line\n")
    settings = {"credentials": {"username": VIPR_USER, "password_file": str(secret)}}
    config = vipr_config(vipr.base_url, **settings)
    state = tmp_path / "state"
    async with upload_stack(config, state_dir=state) as stack:
        sub = await stack.uploads.submit([str(images[0])], "vipr.im")
        job = await stack.engine.wait_final(sub.jobs[0]["job"], timeout=60)
        assert job.result is not None, job.error
    assert job.result["url"].startswith("https://vipr.im/i/")
    assert vipr.requests[0].form["password"] == VIPR_PASS
    # the store and everything else in the state directory hold no password
    for path in state.rglob("*"):
        if path.is_file():
            assert VIPR_PASS.encode() not in path.read_bytes(), path
    assert redact(f"login with {VIPR_PASS}") == "login with ***"


async def test_unreadable_credential_file_is_a_clear_error(
    vipr: FakeVipr, images: list[Path], tmp_path: Path
) -> None:
    config = vipr_config(
        vipr.base_url,
        credentials={"username": VIPR_USER, "password_file": str(tmp_path / "missing")},
    )
    with pytest.raises(PermanentError) as caught:
        await upload_one(config, images[0])
    assert 'recipes.services."vipr.im".credentials.password_file' in str(caught.value)
    assert "cannot read" in str(caught.value)
    assert vipr.requests == []


async def test_password_from_the_keyring(
    vipr: FakeVipr, images: list[Path], memory_keyring: MemoryKeyring
) -> None:
    memory_keyring.set_password(keyring_service("vipr.im"), "password", VIPR_PASS)
    config = vipr_config(vipr.base_url, credentials={"username": VIPR_USER}, keyring=True)
    url = await upload_one(config, images[0])
    ident = content_id(images[0].read_bytes())
    assert url == f"https://vipr.im/i/{ident}/{images[0].name}"
    # only what the config did not give is asked for
    assert memory_keyring.asked == [("hathd:vipr.im", "password")]
    assert vipr.requests[0].form["password"] == VIPR_PASS
    assert redact(f"x {VIPR_PASS} y") == "x *** y"


async def test_keyring_without_the_entry_reports_the_missing_credential(
    vipr: FakeVipr, images: list[Path], memory_keyring: MemoryKeyring
) -> None:
    config = vipr_config(vipr.base_url, credentials={"username": VIPR_USER}, keyring=True)
    with pytest.raises(PermanentError, match=r"needs credential\(s\) password"):
        await upload_one(config, images[0])
    assert memory_keyring.asked == [("hathd:vipr.im", "password")]
    assert vipr.requests == []


async def test_no_keyring_backend_is_said_clearly(vipr: FakeVipr, images: list[Path]) -> None:
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        config = vipr_config(vipr.base_url, credentials={"username": VIPR_USER}, keyring=True)
        with pytest.raises(KeyringUnavailableError, match="no system keyring is available"):
            await upload_one(config, images[0])
    finally:
        keyring.set_keyring(before)
    assert vipr.requests == []


async def test_unreadable_file_fails_that_service_only(
    vipr: FakeVipr, pixhost: FakePixhost, images: list[Path], tmp_path: Path
) -> None:
    """Credentials are read at start-up (off the event loop); a service whose file cannot
    be read fails its own jobs with the reason, the others work."""
    config = services_config(vipr_im=vipr.base_url, pixhost_to=pixhost.base_url)
    config.services["vipr.im"] = ServiceConfig(
        base_url=vipr.base_url,
        credentials={"username": VIPR_USER, "password_file": str(tmp_path / "gone")},
    )
    async with upload_stack(config) as stack:
        bad = await stack.uploads.submit([str(images[0])], "vipr.im")
        good = await stack.uploads.submit([str(images[0])], "pixhost.to")
        failed = await stack.engine.wait_final(bad.jobs[0]["job"], timeout=60)
        done = await stack.engine.wait_final(good.jobs[0]["job"], timeout=60)
    assert failed.state is JobState.FAILED
    assert failed.error is not None
    assert "credentials.password_file" in failed.error
    assert "cannot read" in failed.error
    assert done.state is JobState.DONE
    assert vipr.requests == []
