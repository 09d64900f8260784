"""Convert a Queue4Download setup into hathd's ``[mqtt]``, ``[q4d]`` and ``[q4d.type_map]``.

Inputs (any subset):

- client settings: davidgibbons' ``app/q4d.conf`` (INI, ``[DEFAULT]`` section), the original
  ``Q4Dconfig.sh``/``Q4Dclient.sh`` (shell assignments ``KEY=value``), and ``Q4D_*``
  environment variables (``Q4D_BUS_HOST``…), which win over the files;
- ``Types.config`` (the rules, validated and copied as ``rules``);
- ``type_mapping.json`` (code → folder), or the shell's ``TypeCodes[X]=/dir`` array.

Mapping (source: the Queue4Download README's settings table, ``Q4Dconfig.sh``, ``Q4Dclient.sh``):

=================  ======================================================================
Q4D                hathd
=================  ======================================================================
BUS_HOST/BUS_PORT  ``mqtt.host`` / ``mqtt.port``
USER / PW          ``mqtt.username`` / ``mqtt.password`` (or a password file)
HOST               ``q4d.host = "sftp://HOST"`` (the scripts open ``sftp://$HOST/``)
CREDS              ``q4d.user`` + ``q4d.password`` (``user:pass`` or ``user,pass``)
THREADS/SEGMENTS   ``q4d.threads`` / ``q4d.segments``
LABELLING          ``q4d.labelling``
PATH               ``q4d.download_root``
QUEUE_CHANNEL      ``q4d.topic_down`` (``Down``); LABEL_CHANNEL → ``q4d.topic_label``
DEFAULT_TYPE       ``q4d.default_code``
=================  ======================================================================
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

import attrs

from hathd.q4d.rules import parse_rules

SETTINGS = {
    "BUS_HOST": ("mqtt", "host"),
    "BUS_PORT": ("mqtt", "port"),
    "USER": ("mqtt", "username"),
    "PW": ("mqtt", "password"),
    "HOST": ("q4d", "host"),
    "THREADS": ("q4d", "threads"),
    "SEGMENTS": ("q4d", "segments"),
    "LABELLING": ("q4d", "labelling"),
    "PATH": ("q4d", "download_root"),
    "QUEUE_CHANNEL": ("q4d", "topic_down"),
    "LABEL_CHANNEL": ("q4d", "topic_label"),
    "DEFAULT_TYPE": ("q4d", "default_code"),
}
"""Q4D setting → (section, key); ``CREDS`` is split into user and password."""

_INTS = {"BUS_PORT", "THREADS", "SEGMENTS"}
_TYPECODE = re.compile(
    r"""\[\s*["']?(?P<code>[^]"'\s]+)["']?\s*\]\s*=\s*(?P<dir>"[^"]*"|'[^']*'|[^\s)]+)"""
)


@attrs.frozen
class Imported:
    """The converted sections, the secrets found (``mqtt``, ``q4d``) and notes for the user."""

    sections: dict[str, dict[str, Any]]
    secrets: dict[str, str]
    notes: list[str]


def read_settings(text: str) -> dict[str, str]:
    """``KEY=value`` settings (keys upper-cased for INI) from a q4d.conf (INI, davidgibbons'
    ``app/q4d.conf``) or a Q4D shell file (``Q4Dconfig.sh``/``Q4Dclient.sh``: ``KEY=value``
    lines, shell quoting and comments honoured, anything else ignored).

    :raises ValueError: the INI text cannot be parsed.
    """
    if re.search(r"^\s*\[[^\]]+\]\s*$", text, re.MULTILINE):
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(text)
        except configparser.Error as exc:
            raise ValueError(f"cannot read the q4d.conf: {exc}") from None
        values = dict(parser.defaults())
        for section in parser.sections():
            values.update(parser[section])
        return {k.upper(): v.strip().strip("'\"") for k, v in values.items()}
    values = {}
    for line in text.splitlines():
        match = re.match(r"^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if not match:
            continue
        try:
            words = shlex.split(match.group(2), comments=True)
        except ValueError:
            continue
        values[match.group(1)] = words[0] if words else ""
    return values


def read_type_codes(text: str) -> dict[str, str]:
    """Code → folder from a ``type_mapping.json`` (one JSON object) or from shell
    ``TypeCodes[X]=/dir`` lines (``Q4Dclient.sh``).

    :raises ValueError: invalid JSON, or JSON that is not an object.
    """
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        data = json.loads(stripped)
        if not isinstance(data, dict):
            raise ValueError("type_mapping.json must hold one JSON object")
        return {str(k): str(v) for k, v in data.items()}
    codes: dict[str, str] = {}
    for line in text.splitlines():
        if "TypeCodes" not in line and not line.strip().startswith("["):
            continue
        for match in _TYPECODE.finditer(line):
            codes[match.group("code")] = match.group("dir").strip("'\"")
    return codes


def convert(
    settings: Mapping[str, str],
    *,
    types_config: str | None = None,
    type_codes: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Imported:
    """Build the hathd sections from Q4D settings (``Q4D_*`` in ``environ`` override them).

    :raises ValueError: a number is not a number, or Types.config is invalid.
    """
    merged = dict(settings)
    for name, value in (environ or {}).items():
        if name.startswith("Q4D_"):
            merged[name[4:]] = value
    sections: dict[str, dict[str, Any]] = {"mqtt": {}, "q4d": {"enabled": True}}
    secrets: dict[str, str] = {}
    notes: list[str] = []
    for name, value in merged.items():
        if name == "CREDS":
            _creds(value, sections, secrets, notes)
            continue
        target = SETTINGS.get(name)
        if target is None:
            continue
        section, key = target
        converted: Any = value
        if name in _INTS:
            try:
                converted = int(value)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {value!r}") from None
        elif name == "LABELLING":
            converted = value.strip().lower() in ("true", "yes", "1", "on")
        elif name == "HOST":
            converted = value if "://" in value else f"sftp://{value.strip('/')}"
        elif name == "PW":
            secrets["mqtt"] = value
            continue
        sections[section][key] = converted
    sections["mqtt"].setdefault("client_id", "hathd-q4d")
    if types_config is not None:
        rules = parse_rules(types_config, source="Types.config")
        sections["q4d"]["rules"] = [
            _rule_line(r.field, r.conditional, r.value, r.code, r.assigned) for r in rules
        ]
        if any(r.field.value in ("LABEL", "TRACKER") for r in rules):
            notes.append(
                "Types.config rules on LABEL or TRACKER run on the seedbox in Queue4Download; "
                "the Down payload does not carry them, so on hathd they see empty values"
            )
    if type_codes:
        sections["q4d.type_map"] = dict(type_codes)
    return Imported(sections, secrets, notes)


def _rule_line(field: Any, cond: Any, value: str, code: str, assigned: str) -> str:
    words = [str(field), str(cond), value, code] + ([assigned] if assigned else [])
    return " ".join(shlex.quote(w) for w in words)


def _creds(
    value: str, sections: dict[str, dict[str, Any]], secrets: dict[str, str], notes: list[str]
) -> None:
    for sep in (",", ":"):
        if sep in value:
            user, _, password = value.partition(sep)
            sections["q4d"]["user"] = user
            secrets["q4d"] = password
            return
    if value.startswith("/"):
        notes.append(
            f"CREDS {value!r} looks like a file; set q4d.user and q4d.password_file by hand"
        )
    elif value:
        sections["q4d"]["user"] = value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(imported: Imported, *, password_files: Mapping[str, str] | None = None) -> str:
    """TOML text of the sections; each secret goes in as ``password_file`` when
    ``password_files`` names a file for it, else inline as ``password``."""
    out: list[str] = []
    for name, values in imported.sections.items():
        body = dict(values)
        if name in ("mqtt", "q4d") and name in imported.secrets:
            if password_files and name in password_files:
                body["password_file"] = password_files[name]
            else:
                body["password"] = imported.secrets[name]
        if not body:
            continue
        out.append(f"[{name}]")
        out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items())
        out.append("")
    return "\n".join(out)
