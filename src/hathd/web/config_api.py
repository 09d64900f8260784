"""The configuration API: read, validate and change the TOML file, with backups.

- ``GET /api/v1/config`` (admin) — the effective configuration; a secret shows as ``"***"``
  when set (a list of URLs keeps each scheme: ``["tgram://***"]``) and as its empty default
  when unset. Secrets are never returned.
- ``POST /api/v1/config/validate`` (admin) ``{"config": {...}}`` — ``{"ok": bool,
  "problems": [{"key", "message"}], "restart_required": [keys]}``; nothing is written.
- ``PUT /api/v1/config`` (admin) ``{"config": {...}}`` — replaces the file's content. A secret
  sent back as ``"***"`` keeps the file's value; a ``null`` leaves its key unset (default). The
  file is backed up first, then written
  atomically (temporary file, fsync, rename; mode 0600) and the daemon reloads it as on
  SIGHUP. ``200 {"ok": true, "backup": id, "restart_required": [keys]}``; ``400`` code
  ``invalid`` with ``problems``; ``409`` code ``no_config_file`` when hathd runs without a
  file.
- ``GET /api/v1/config/backups`` — ``{"backups": [{"id", "created", "size"}]}``, newest
  first; ``POST`` makes one now (201); ``POST /api/v1/config/backups/<id>/restore`` puts it
  back (after backing up the current file); ``DELETE /api/v1/config/backups/<id>``.

Backups live in ``<state>/config-backups/``; the newest :data:`KEEP` are kept.

- ``GET /api/v1/config/restart`` (admin) — ``{"keys": [key paths a reload cannot apply],
  "pending": [changed keys waiting for a restart now]}``, for the settings page.

Which keys a reload applies is decided by :mod:`hathd.reload` alone (:func:`hathd.reload.is_live`):
every other changed key is listed in ``restart_required`` and takes effect at the next start.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import tomli_w
import trio
from quart import Blueprint, Response, request

from hathd import config as config_mod
from hathd import reload as reload_mod
from hathd.errors import ConfigError
from hathd.runtime import Runtime
from hathd.web.auth import error, require

KEEP: Final = 10
"""Backups kept."""

_BACKUP_ID = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")

type Reload = Callable[[], Awaitable[None]]


@attrs.define
class ConfigFiles:
    """Where the configuration file and its backups are; ``reload`` applies a written file."""

    path: Path | None
    backups: Path
    reload: Reload | None = None
    environ: Mapping[str, str] = attrs.field(factory=lambda: dict(os.environ))


# -- pure functions ----------------------------------------------------------------------


def secret_paths(obj: Any = None, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Key paths of every secret field, found by walking ``obj`` (default: a default
    :class:`hathd.config.Config`), e.g. ``("hath", "client_key")``."""
    if obj is None:
        obj = config_mod.Config()
    for field in attrs.fields(type(obj)):
        path = (*prefix, field.name)
        if field.metadata.get("secret"):
            yield path
            continue
        value = getattr(obj, field.name)
        if attrs.has(type(value)):
            yield from secret_paths(value, path)


def _is_redacted(value: Any) -> bool:
    if value == "***":
        return True
    return (
        isinstance(value, list)
        and bool(value)
        and all((isinstance(v, str) and v.endswith("://***")) or v == "***" for v in value)
    )


def merge_secrets(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``new`` with each redacted secret (``"***"``) replaced by ``old``'s value, or dropped
    when ``old`` has none; ``new`` is not modified."""
    merged: dict[str, Any] = _copy(new)
    for path in secret_paths():
        parent: Any = merged
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or not _is_redacted(parent.get(path[-1])):
            continue
        source: Any = old
        for part in path:
            source = source.get(part) if isinstance(source, dict) else None
        if source is None:
            del parent[path[-1]]
        else:
            parent[path[-1]] = source
    return merged


def drop_nulls(data: Any) -> Any:
    """``data`` without the keys whose value is ``null`` (TOML has no null: an unset key keeps
    its default), at every depth, so the body of ``GET`` can be sent back as it is."""
    if isinstance(data, dict):
        return {k: drop_nulls(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [drop_nulls(v) for v in data]
    return data


def _copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    return data


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def restart_required(old: config_mod.Config, new: config_mod.Config) -> list[str]:
    """Changed keys that take effect only at the next start (sorted), as
    :func:`hathd.reload.restart_keys` decides."""
    return reload_mod.restart_keys(old, new)


def restart_keys_of(shown: dict[str, Any]) -> list[str]:
    """The leaf key paths of ``shown`` (the configuration as ``GET`` returns it) that a reload
    cannot apply, sorted."""
    return sorted(k for k in _leaves(shown) if reload_mod.needs_restart(k))


def validate(data: Any, environ: Mapping[str, str]) -> config_mod.Config:
    """The configuration ``data`` (file-level, before environment overrides) would give.

    :raises ConfigError: with every problem.
    """
    if not isinstance(data, dict):
        raise ConfigError([("(body)", "config must be a JSON object of sections")])
    try:
        tomli_w.dumps(data).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError: a lone surrogate
        raise ConfigError([("(body)", f"not representable in TOML: {exc}")]) from None
    return config_mod.structure(config_mod.apply_env(_copy(data), environ))


def _problems(exc: ConfigError) -> list[dict[str, str]]:
    found = [{"key": str(key), "message": str(message)} for key, message in exc.problems]
    return found or [{"key": "(config)", "message": str(exc)}]


# -- file operations (run in a worker thread) --------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically: a private temporary file in the same
    directory, fsync, rename over, fsync of the directory. Mode 0600."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_file_data(path: Path) -> dict[str, Any]:
    """The TOML data of ``path`` ({} when the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    data: dict[str, Any] = tomllib.loads(text)
    return data


def make_backup(files: ConfigFiles) -> str | None:
    """Copy the current file into the backups (pruning to :data:`KEEP`); returns the id, or
    None when there is no file yet."""
    assert files.path is not None
    try:
        text = files.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    files.backups.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
    backup_id = f"{stamp}{now // 1000 % 1_000_000:06d}Z-{secrets.token_hex(3)}"
    write_atomic(files.backups / f"{backup_id}.toml", text)
    for old in list_backups(files)[KEEP:]:
        (files.backups / f"{old['id']}.toml").unlink(missing_ok=True)
    return backup_id


def list_backups(files: ConfigFiles) -> list[dict[str, Any]]:
    """Backups, newest first: ``{"id", "created" (Unix s), "size" (bytes)}``."""
    if not files.backups.is_dir():
        return []
    found = []
    for entry in files.backups.iterdir():
        if entry.suffix == ".toml" and _BACKUP_ID.match(entry.stem):
            stat = entry.stat()
            found.append({"id": entry.stem, "created": stat.st_mtime, "size": stat.st_size})
    found.sort(key=lambda b: str(b["id"]), reverse=True)
    return found


# -- routes ------------------------------------------------------------------------------


def blueprint(rt: Runtime, files: ConfigFiles) -> Blueprint:
    """The configuration routes for ``rt``'s daemon, writing ``files``."""
    bp = Blueprint("config_api", __name__)
    lock = trio.Lock()

    async def body_config() -> dict[str, Any] | Response:
        try:
            body = json.loads(await request.get_data(as_text=False) or b"null")
        except (ValueError, UnicodeDecodeError):
            return error(400, "bad_request", "the body must be a JSON object")
        if not isinstance(body, dict) or not isinstance(body.get("config"), dict):
            return error(400, "bad_request", 'the body must be {"config": {...}}')
        config: dict[str, Any] = drop_nulls(body["config"])
        return config

    def no_file() -> Response:
        return error(
            409,
            "no_config_file",
            "hathd runs without a configuration file (start it with --config FILE)",
        )

    async def apply(data: dict[str, Any]) -> Response | dict[str, Any]:
        """Validate ``data`` (secrets merged), back up, write, reload."""
        path = files.path
        assert path is not None
        try:
            current = await trio.to_thread.run_sync(read_file_data, path)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            current = {}
        merged = merge_secrets(data, current)
        try:
            new = validate(merged, files.environ)
        except ConfigError as exc:
            return error(400, "invalid", "the configuration is not valid", problems=_problems(exc))
        try:
            backup = await trio.to_thread.run_sync(make_backup, files)
            await trio.to_thread.run_sync(write_atomic, path, tomli_w.dumps(merged))
        except OSError as exc:
            return error(409, "config_write", f"cannot write the configuration: {exc.strerror}")
        restart = restart_required(rt.config, new)
        if files.reload is not None:
            await files.reload()
        return {"ok": True, "backup": backup, "restart_required": restart}

    @bp.get("/api/v1/config")
    @require("admin")
    async def get_config() -> dict[str, Any]:
        return config_mod.unstructure_redacted(rt.config)

    @bp.get("/api/v1/config/restart")
    @require("admin")
    async def restart_keys() -> dict[str, Any]:
        shown = config_mod.unstructure_redacted(rt.config)
        return {"keys": restart_keys_of(shown), "pending": list(rt.restart_pending)}

    @bp.post("/api/v1/config/validate")
    @require("admin")
    async def validate_config() -> Response | dict[str, Any]:
        data = await body_config()
        if isinstance(data, Response):
            return data
        current: dict[str, Any] = {}
        if files.path is not None:
            try:
                current = await trio.to_thread.run_sync(read_file_data, files.path)
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
                current = {}
        try:
            new = validate(merge_secrets(data, current), files.environ)
        except ConfigError as exc:
            return {"ok": False, "problems": _problems(exc), "restart_required": []}
        return {"ok": True, "problems": [], "restart_required": restart_required(rt.config, new)}

    @bp.put("/api/v1/config")
    @require("admin")
    async def put_config() -> Response | dict[str, Any]:
        data = await body_config()
        if isinstance(data, Response):
            return data
        if files.path is None:
            return no_file()
        async with lock:
            return await apply(data)

    @bp.get("/api/v1/config/backups")
    @require("admin")
    async def backups() -> dict[str, Any]:
        return {"backups": await trio.to_thread.run_sync(list_backups, files)}

    @bp.post("/api/v1/config/backups")
    @require("admin")
    async def backup_now() -> Response | tuple[dict[str, Any], int]:
        if files.path is None:
            return no_file()
        async with lock:
            try:
                backup = await trio.to_thread.run_sync(make_backup, files)
            except OSError as exc:
                return error(409, "config_write", f"cannot write the backup: {exc.strerror}")
        if backup is None:
            return error(409, "no_config_file", "the configuration file does not exist yet")
        return {"id": backup}, 201

    @bp.post("/api/v1/config/backups/<backup_id>/restore")
    @require("admin")
    async def restore(backup_id: str) -> Response | dict[str, Any]:
        if files.path is None:
            return no_file()
        source = files.backups / f"{backup_id}.toml"
        if not _BACKUP_ID.match(backup_id) or not source.is_file():
            return error(404, "not_found", f"no backup {backup_id}")
        try:
            data = await trio.to_thread.run_sync(read_file_data, source)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            return error(409, "invalid", f"backup {backup_id} is unreadable: {exc}")
        async with lock:
            return await apply(data)

    @bp.delete("/api/v1/config/backups/<backup_id>")
    @require("admin")
    async def delete_backup(backup_id: str) -> Response | dict[str, Any]:
        source = files.backups / f"{backup_id}.toml"
        if not _BACKUP_ID.match(backup_id) or not source.is_file():
            return error(404, "not_found", f"no backup {backup_id}")
        await trio.to_thread.run_sync(source.unlink)
        return {"ok": True}

    return bp
