"""The configuration: one TOML file structured into attrs classes with cattrs.

Every key has a default, so ``hathd run`` works with no file. Environment variables
``HATHD_SECTION__KEY=value`` override the file (``__`` separates levels; the value is read as a
TOML value when it parses as one, e.g. ``4`` or ``true`` or ``["a"]``, else as a plain string).
An invalid configuration raises :class:`~hathd.errors.ConfigError` listing every problem with its
key path (``engine.workers``).
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from hathd.anime.config import AnimeConfig
from hathd.confutil import FieldError, in_range, one_of
from hathd.engine.config import EngineConfig
from hathd.errors import ConfigError
from hathd.fanfic.config import FanficConfig, ImapConfig
from hathd.gallery.config import GalleryConfig
from hathd.hath.config import HathConfig
from hathd.logfile import LogConfig
from hathd.mediaserver.config import MediaServersConfig
from hathd.notify.config import NotifyConfig
from hathd.q4d.config import MqttConfig, Q4DConfig
from hathd.recipes.config import RecipesConfig

ENV_PREFIX = "HATHD_"


@attrs.frozen
class DaemonConfig:
    """``[daemon]``: where state lives, how long shutdown may take (seconds), log level."""

    state_dir: str | None = None
    """State directory; unset = ``$STATE_DIRECTORY``, else ``$XDG_STATE_HOME/hathd`` (or
    ``~/.local/state/hathd``); ``--state-dir`` wins over it."""
    shutdown_grace: float = attrs.field(default=20.0, validator=in_range(0.1, 3600))
    """Seconds the whole orderly shutdown (SIGTERM/SIGINT) may take."""
    log_level: str = attrs.field(
        default="INFO", validator=one_of("DEBUG", "INFO", "WARNING", "ERROR")
    )
    """Log level: ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``."""
    restart_backoff_max: float = attrs.field(default=60.0, validator=in_range(0.01, 3600))
    """Longest wait in seconds between restarts of a crashed service (the backoff doubles)."""


@attrs.frozen
class AdminConfig:
    """``[admin]``: the admin API on a unix socket and on TCP (bearer token required)."""

    socket: str | None = None
    """Path of the admin API's unix socket; unset = ``<state_dir>/admin.sock``."""
    host: str = "127.0.0.1"
    """Address the admin API's TCP listener binds."""
    port: int = attrs.field(default=8750, validator=in_range(0, 65535))
    """TCP port of the admin API; 0 = any free port, written to ``<state_dir>/admin.url``."""
    token_file: str | None = None
    """File holding the bearer token of TCP requests (created, mode 0600, on first run);
    unset = ``<state_dir>/admin.token``."""
    audit_keep_days: float = attrs.field(default=90.0, validator=in_range(1, 36500))
    """Days the audit trail (who changed what through the API) keeps an entry."""
    audit_keep_rows: int = attrs.field(default=100_000, validator=in_range(100, 100_000_000))
    """Most audit entries kept; the oldest go first."""


@attrs.frozen
class Config:
    """The whole configuration; every section has defaults."""

    daemon: DaemonConfig = attrs.field(factory=DaemonConfig)
    admin: AdminConfig = attrs.field(factory=AdminConfig)
    engine: EngineConfig = attrs.field(factory=EngineConfig)
    hath: HathConfig = attrs.field(factory=HathConfig)
    gallery: GalleryConfig = attrs.field(factory=GalleryConfig)
    mqtt: MqttConfig = attrs.field(factory=MqttConfig)
    q4d: Q4DConfig = attrs.field(factory=Q4DConfig)
    imap: ImapConfig = attrs.field(factory=ImapConfig)
    fanfic: FanficConfig = attrs.field(factory=FanficConfig)
    notify: NotifyConfig = attrs.field(factory=NotifyConfig)
    media_servers: MediaServersConfig = attrs.field(factory=MediaServersConfig)
    recipes: RecipesConfig = attrs.field(factory=RecipesConfig)
    log: LogConfig = attrs.field(factory=LogConfig)
    anime: AnimeConfig = attrs.field(factory=AnimeConfig)


converter = cattrs.Converter(forbid_extra_keys=True)


def _strict_int(value: Any, _tp: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strict_float(value: Any, _tp: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _strict_bool(value: Any, _tp: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _strict_str(value: Any, _tp: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return str(value)


# TOML is typed: a value of the wrong type is an error, never silently converted.
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(bool, _strict_bool)
converter.register_structure_hook(str, _strict_str)


class EnvText(str):
    """The raw text of a ``HATHD_*`` variable, converted by the type of the key it sets:
    text keys take it as it is, booleans accept ``true/false/1/0/yes/no/on/off``, numbers,
    lists and tables are read as TOML values."""


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _from_env(text: EnvText, cls: Any) -> Any:
    if typing.get_origin(cls) in (types.UnionType, typing.Union):
        cls = next(a for a in typing.get_args(cls) if a is not type(None))
    if cls is str:
        return str(text)
    if cls is bool and text.strip().lower() in _TRUE | _FALSE:
        return text.strip().lower() in _TRUE
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return str(text)  # the type check names the key and the expected type


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Return ``data`` with every ``HATHD_SECTION__KEY`` override from ``environ`` applied."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        node = merged
        for part in parts[:-1]:
            child = node.get(part)
            child = {} if not isinstance(child, dict) else dict(child)
            node[part] = child
            node = child
        node[parts[-1]] = EnvText(raw)
    return merged


KeyPath = tuple[str | int, ...]


def _fmt(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top)"


def _problems(exc: BaseException, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                name = getattr(note, "name", None)
                index = getattr(note, "index", None)
                if name is not None:
                    sub_path = (*path, str(name))
                elif index is not None:
                    sub_path = (*path, index if isinstance(index, int) else str(index))
            yield from _problems(sub, sub_path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            yield (*path, key), "unknown key"
    elif isinstance(exc, FieldError):
        yield (*path, exc.field), exc.message
    elif isinstance(exc, TypeError | ValueError):
        yield path, f"invalid value: {exc}"
    else:
        yield path, f"{type(exc).__name__}: {exc}"


def _drop(data: Any, path: KeyPath) -> bool:
    """Remove ``path`` from nested ``data``; False when it was not there."""
    node = data
    for part in path[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    if isinstance(node, dict) and path and path[-1] in node:
        del node[path[-1]]
        return True
    return False


def _strip_unknown(data: Any, cls: Any, path: KeyPath, problems: list[tuple[KeyPath, str]]) -> Any:
    """Return a copy of ``data`` without keys ``cls`` does not declare, recording each, and
    with every :class:`EnvText` converted by the type of its key."""
    if isinstance(data, EnvText):
        return _from_env(data, cls)
    if attrs.has(cls) and isinstance(data, dict):
        hints = typing.get_type_hints(cls)
        known = {f.name: hints.get(f.name) for f in attrs.fields(cls)}
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                problems.append(((*path, key), "unknown key"))
                continue
            out[key] = _strip_unknown(value, known[key], (*path, key), problems)
        return out
    origin = typing.get_origin(cls)
    if origin is dict and isinstance(data, dict):
        _, value_type = typing.get_args(cls)
        return {k: _strip_unknown(v, value_type, (*path, k), problems) for k, v in data.items()}
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(cls):
            if attrs.has(arg):
                return _strip_unknown(data, arg, path, problems)
    if isinstance(data, dict):
        return dict(data)
    if isinstance(data, list):
        return list(data)
    return data


def _cross_problems(config: Config) -> Iterator[tuple[KeyPath, str]]:
    """Problems that span sections: a ``retry_preset`` must name a built-in preset or one of
    ``[engine.retry.<name>]``."""
    from hathd.engine.retry import BUILTIN_PRESETS

    known = sorted(set(BUILTIN_PRESETS) | set(config.engine.retry))
    for section, name in (
        ("engine", config.engine.retry_preset),
        ("fanfic", config.fanfic.retry_preset),
        ("q4d", config.q4d.retry_preset),
    ):
        if name and name not in known:
            yield (section, "retry_preset"), f"unknown preset {name!r}; known: {', '.join(known)}"


def structure(data: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from plain data.

    Every problem is reported in one go: unknown keys first, then each invalid value (a value
    that fails is set aside and the rest checked again, so one bad field hides no other).

    :raises ConfigError: with every problem and its key path.
    """
    problems: list[tuple[KeyPath, str]] = []
    cleaned = _strip_unknown(dict(data), Config, (), problems)
    for _ in range(100):
        try:
            config = converter.structure(cleaned, Config)
        except (ClassValidationError, ForbiddenExtraKeysError, FieldError) as exc:
            found = list(_problems(exc, ()))
            problems.extend(found)
            if not any(_drop(cleaned, path) for path, _ in found):
                break
            continue
        problems.extend(_cross_problems(config))
        if not problems:
            return config
        break
    unique = dict.fromkeys((_fmt(path), message) for path, message in problems)
    raise ConfigError(list(unique))


def load(path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file at ``path`` (``None``: defaults only), apply env overrides, validate.

    :raises ConfigError: unreadable file, TOML syntax error, or invalid values.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([("(file)", f"cannot read {path}: {exc}")]) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([("(file)", f"TOML syntax error: {exc}")]) from None
    return structure(apply_env(data, os.environ if environ is None else environ))


def _redact_url(url: str) -> str:
    """``scheme://***``: the scheme tells which service, the rest may hold tokens."""
    scheme, sep, _rest = url.partition("://")
    return f"{scheme}://***" if sep else "***"


def unstructure_redacted(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data, secrets replaced by ``"***"`` (a secret
    list of URLs keeps each URL's scheme: ``["tgram://***"]``)."""

    def walk(obj: Any) -> Any:
        if attrs.has(type(obj)):
            out: dict[str, Any] = {}
            for field in attrs.fields(type(obj)):
                value = getattr(obj, field.name)
                if field.metadata.get("secret") and isinstance(value, list):
                    out[field.name] = [_redact_url(str(v)) for v in value]
                elif field.metadata.get("secret") and value not in (None, ""):
                    out[field.name] = "***"
                else:
                    out[field.name] = walk(value)
            return out
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [walk(v) for v in obj]
        return obj

    result: dict[str, Any] = walk(config)
    return result
