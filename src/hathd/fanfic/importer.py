"""Bringing an AutomatedFanfic ``config.toml`` over to hathd (pure functions).

Mapping (AutomatedFanfic keys: ``root/config.default/config.toml`` and
``root/app/models/config_models.py``, v3.9.2; q4d-and-fanfic.md §2.1):

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


def convert(data: dict[str, Any]) -> Imported:
    """Convert parsed AutomatedFanfic configuration ``data`` (see the module table)."""
    notes: list[str] = []
    email = dict(data.get("email") or {})
    calibre = dict(data.get("calibre") or {})
    retry = dict(data.get("retry") or {})
    imap: dict[str, Any] = {}
    fanfic: dict[str, Any] = {"enabled": True}
    cal: dict[str, Any] = {}
    notify_urls: list[str] = []
    if email.get("server"):
        imap.update(host=email["server"], tls="tls", port=993)
    if email.get("email"):
        imap["username"] = email["email"]
    if email.get("password"):
        imap["password"] = email["password"]
        notes.append("the IMAP password was copied; consider [imap] password_file instead")
    if email.get("mailbox"):
        imap["mailbox"] = email["mailbox"]
    if "sleep_time" in email:
        imap["poll_interval"] = float(email["sleep_time"])
    sites = [_site(s) for s in email.get("disabled_sites") or [] if str(s).strip()]
    if email.get("ffnet_disable") and "www.fanfiction.net" not in sites:
        sites.append("www.fanfiction.net")
    if sites:
        fanfic["disabled_sites"] = sites
    if calibre.get("path"):
        cal["library"] = calibre["path"]
    for key in ("username", "password"):
        if calibre.get(key):
            cal[key] = calibre[key]
    if calibre.get("default_ini"):
        fanfic["defaults_ini"] = calibre["default_ini"]
    if calibre.get("personal_ini"):
        fanfic["personal_ini"] = calibre["personal_ini"]
    if calibre.get("update_method"):
        fanfic["update_method"] = calibre["update_method"]
    if calibre.get("metadata_preservation_mode"):
        cal["metadata_mode"] = calibre["metadata_preservation_mode"]
    engine: dict[str, Any] = {}
    if retry:
        normal = int(retry.get("max_normal_retries", 11))
        preset: dict[str, Any] = {
            "delays": [60.0 * min(n, 20) for n in range(1, max(normal, 1))],
            "jitter": 0.5,
        }
        if retry.get("hail_mary_enabled", True):
            preset["final_wait"] = float(retry.get("hail_mary_wait_hours", 12.0)) * 3600.0
        else:
            preset["final_try"] = False
        engine = {"retry": {"fanfic": preset}}
    notify_urls += [u for u in (data.get("apprise") or {}).get("urls") or [] if u]
    pushbullet = dict(data.get("pushbullet") or {})
    if pushbullet.get("enabled") and pushbullet.get("api_key"):
        notify_urls.append(f"pbul://{pushbullet['api_key']}")
        if pushbullet.get("device"):
            notes.append(
                f"pushbullet device {pushbullet['device']!r} is not resolved; "
                "append /DEVICE_IDEN to the pbul:// URL to target it"
            )
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

    :raises ValueError: the text is not valid TOML.
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
