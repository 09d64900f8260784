"""Bringing an AutomatedFanfic ``config.toml`` over to hathd (pure functions).

Mapping (AutomatedFanfic keys: ``root/config.default/config.toml`` and
``root/app/models/config_models.py``, v3.9.2; docs/fanfic.md):

=======================================  ==============================================
AutomatedFanfic                          hathd
=======================================  ==============================================
``[email] email``                        ``[imap] username``
``[email] password``                     ``[imap] password`` (better: ``password_file``)
``[email] server``                       ``[imap] host`` (``tls = "tls"``, port 993)
``[email] mailbox``                      ``[imap] mailbox``
``[email] sleep_time``                   ``[imap] poll_interval`` (IDLE is used when
                                         the server offers it)
``[email] disabled_sites``               ``[fanfic] disabled_sites`` (site keys such as
                                         ``fanfiction`` become ``www.fanfiction.net``)
``[email] ffnet_disable = true``         ``disabled_sites = ["www.fanfiction.net"]``
``[calibre] path``                       ``[fanfic.calibre] library``
``[calibre] username`` / ``password``    ``[fanfic.calibre] username`` / ``password``
``[calibre] default_ini``                ``[fanfic] defaults_ini``
``[calibre] personal_ini``               ``[fanfic] personal_ini``
``[calibre] update_method``              ``[fanfic] update_method``
``[calibre] metadata_preservation_mode`` ``[fanfic.calibre] metadata_mode``
``[apprise] urls``                       ``[notify] urls``
``[pushbullet] api_key`` (+ enabled)     ``[notify] urls`` += ``pbul://KEY`` (a device
                                         nickname is not resolved: add ``/DEVICE_IDEN``)
``[retry] max_normal_retries`` (N)      ``[engine.retry.fanfic] delays`` = N − 1 waits
                                         of ``min(n, 20)`` minutes, ``jitter = 0.5``
``[retry] hail_mary_enabled``            ``[engine.retry.fanfic] final_try``
``[retry] hail_mary_wait_hours``         ``[engine.retry.fanfic] final_wait`` (seconds)
``max_workers``, ``[process]``, ``[web]`` no equivalent (the engine's ``[engine] workers``,
                                         the supervisor and the admin API cover them)
=======================================  ==============================================
"""

from __future__ import annotations

import tomllib
from typing import Any

import attrs

SITE_KEYS: dict[str, str] = {
    "fanfiction": "www.fanfiction.net",
    "ffnet": "www.fanfiction.net",
    "fictionpress": "www.fictionpress.com",
    "archiveofourown": "archiveofourown.org",
    "ao3": "archiveofourown.org",
    "royalroad": "www.royalroad.com",
    "spacebattles": "forums.spacebattles.com",
    "sufficientvelocity": "forums.sufficientvelocity.com",
    "questionablequesting": "forum.questionablequesting.com",
    "wattpad": "www.wattpad.com",
}
"""AutomatedFanfic site keys (first meaningful domain label) → FanFicFare site domains."""

IGNORED = ("max_workers", "process", "web", "version")


@attrs.frozen
class Imported:
    """The hathd configuration sections (plain data) and notes for the user."""

    sections: dict[str, Any]
    notes: tuple[str, ...]


def _site(key: str) -> str:
    key = key.strip()
    if "." in key:
        return key
    return SITE_KEYS.get(key.lower(), key)


def _kind(value: Any) -> str:
    return "a table" if isinstance(value, dict) else f"{type(value).__name__} {value!r}"


class _Reader:
    """Typed access to the parsed AutomatedFanfic document; every type problem is collected
    as ``"key.path: expected …, got …"``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []

    def table(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problems.append(f"[{name}]: expected a table, got {_kind(value)}")
            return {}
        return value

    def _bad(self, where: str, key: str, expected: str, value: Any) -> None:
        self.problems.append(f"{where}.{key}: expected {expected}, got {_kind(value)}")

    def text(self, table: dict[str, Any], where: str, key: str) -> str | None:
        value = table.get(key)
        if value is None or isinstance(value, str):
            return value
        self._bad(where, key, "a string", value)
        return None

    def number(self, table: dict[str, Any], where: str, key: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        self._bad(where, key, "a number", value)
        return None

    def flag(self, table: dict[str, Any], where: str, key: str) -> bool | None:
        value = table.get(key)
        if value is None or isinstance(value, bool):
            return value
        self._bad(where, key, "true or false", value)
        return None

    def texts(self, table: dict[str, Any], where: str, key: str) -> list[str]:
        """A list of strings; a single string is taken as a list of one."""
        value = table.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        self._bad(where, key, "a list of strings", value)
        return []


def convert(data: dict[str, Any]) -> Imported:
    """Convert parsed AutomatedFanfic configuration ``data`` (see the module table).

    A single string where a list is expected (``disabled_sites = "fanfiction"``,
    ``[apprise] urls = "json://…"``) counts as a list of one.

    :raises ValueError: values of the wrong type, every one named by its key path
        (``email.sleep_time: expected a number, got str '60s'``).
    """
    notes: list[str] = []
    read = _Reader(data)
    email = read.table("email")
    calibre = read.table("calibre")
    retry = read.table("retry")
    apprise = read.table("apprise")
    pushbullet = read.table("pushbullet")
    imap: dict[str, Any] = {}
    fanfic: dict[str, Any] = {"enabled": True}
    cal: dict[str, Any] = {}
    notify_urls: list[str] = []
    if server := read.text(email, "email", "server"):
        imap.update(host=server, tls="tls", port=993)
    if user := read.text(email, "email", "email"):
        imap["username"] = user
    if password := read.text(email, "email", "password"):
        imap["password"] = password
        notes.append("the IMAP password was copied; consider [imap] password_file instead")
    if mailbox := read.text(email, "email", "mailbox"):
        imap["mailbox"] = mailbox
    sleep_time = read.number(email, "email", "sleep_time")
    if sleep_time is not None:
        imap["poll_interval"] = sleep_time
    sites = [_site(s) for s in read.texts(email, "email", "disabled_sites") if s.strip()]
    if read.flag(email, "email", "ffnet_disable") and "www.fanfiction.net" not in sites:
        sites.append("www.fanfiction.net")
    if sites:
        fanfic["disabled_sites"] = sites
    if path := read.text(calibre, "calibre", "path"):
        cal["library"] = path
    for key in ("username", "password"):
        if value := read.text(calibre, "calibre", key):
            cal[key] = value
    if default_ini := read.text(calibre, "calibre", "default_ini"):
        fanfic["defaults_ini"] = default_ini
    if personal_ini := read.text(calibre, "calibre", "personal_ini"):
        fanfic["personal_ini"] = personal_ini
    if update_method := read.text(calibre, "calibre", "update_method"):
        fanfic["update_method"] = update_method
    if mode := read.text(calibre, "calibre", "metadata_preservation_mode"):
        cal["metadata_mode"] = mode
    engine: dict[str, Any] = {}
    if retry:
        normal = read.number(retry, "retry", "max_normal_retries")
        count = 11 if normal is None else int(normal)
        preset: dict[str, Any] = {
            "delays": [60.0 * min(n, 20) for n in range(1, max(count, 1))],
            "jitter": 0.5,
        }
        if read.flag(retry, "retry", "hail_mary_enabled") is not False:
            hours = read.number(retry, "retry", "hail_mary_wait_hours")
            preset["final_wait"] = (12.0 if hours is None else hours) * 3600.0
        else:
            preset["final_try"] = False
        engine = {"retry": {"fanfic": preset}}
    notify_urls += [u for u in read.texts(apprise, "apprise", "urls") if u]
    api_key = read.text(pushbullet, "pushbullet", "api_key")
    device = read.text(pushbullet, "pushbullet", "device")
    if read.flag(pushbullet, "pushbullet", "enabled") and api_key:
        notify_urls.append(f"pbul://{api_key}")
        if device:
            notes.append(
                f"pushbullet device {device!r} is not resolved; "
                "append /DEVICE_IDEN to the pbul:// URL to target it"
            )
    if read.problems:
        raise ValueError("; ".join(read.problems))
    for key in IGNORED:
        if key in data:
            notes.append(f"{key!r} has no hathd equivalent and was left out")
    if cal:
        fanfic["calibre"] = cal
    sections: dict[str, Any] = {"fanfic": fanfic}
    if imap:
        sections["imap"] = imap
    if notify_urls:
        sections["notify"] = {"urls": notify_urls}
    if engine:
        sections["engine"] = engine
    return Imported(sections, tuple(notes))


def convert_text(text: str) -> Imported:
    """Convert the text of an AutomatedFanfic ``config.toml``.

    :raises ValueError: the text is not valid TOML, or a value has the wrong type
        (:func:`convert`).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from None
    return convert(data)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def to_toml(sections: dict[str, Any]) -> str:
    """Render nested sections of scalars and lists as TOML (tables before sub-tables)."""
    out: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        out.append(f"[{name}]")
        out.extend(f"{k} = {_value(v)}" for k, v in scalars.items())
        out.append("")
        for key, sub in body.items():
            if isinstance(sub, dict):
                table(f"{name}.{key}", sub)

    for name in ("imap", "fanfic", "notify", "engine"):
        if name in sections:
            table(name, sections[name])
    return "\n".join(out)
