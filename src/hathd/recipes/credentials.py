"""Where a service's credentials come from: the configuration's ``credentials`` table, its
``NAME_file`` keys, or the system keyring.

For each credential a recipe declares, in this order:

1. ``credentials.NAME`` in ``[recipes.services."<id>"]`` (secret in ``config show``);
2. ``credentials.NAME_file``: the first line of that file, read as every ``*_file`` key of
   hathd is (:func:`hathd.confutil.read_secret`);
3. with ``keyring = true``: the system keyring's password for service ``hathd:<id>`` and
   user ``NAME`` (the ``keyring`` library, https://pypi.org/project/keyring/; store one with
   ``keyring set hathd:imx.to api_key``).

Nothing is written anywhere: the values live in the session's memory only, and secret ones
are redacted from logs and errors (:mod:`hathd.recipes.redact`).
"""

from __future__ import annotations

from collections.abc import Callable

from hathd.confutil import read_secret
from hathd.errors import ConfigError, PermanentError
from hathd.recipes.config import ServiceConfig
from hathd.recipes.model import Site

KEYRING_PREFIX = "hathd:"
"""The keyring service name of a recipe is this prefix and the recipe's id."""


class KeyringUnavailableError(PermanentError):
    """``keyring = true`` but no usable keyring backend is installed or running."""


def keyring_service(recipe_id: str) -> str:
    """The keyring service name under which the credentials of ``recipe_id`` are kept."""
    return KEYRING_PREFIX + recipe_id


def _keyring_getter() -> Callable[[str, str], str | None]:
    """``keyring.get_password`` of a usable backend.

    :raises KeyringUnavailableError: the library is missing, or its backend is the "fail"
        one (no Secret Service, KWallet … reachable).
    """
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        raise KeyringUnavailableError(
            "keyring = true, but the keyring library is not installed; use credentials.NAME_file"
        ) from None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        raise KeyringUnavailableError(
            "keyring = true, but no system keyring is available (no Secret Service or other"
            " backend found; set PYTHON_KEYRING_BACKEND or use credentials.NAME_file)"
        )
    getter: Callable[[str, str], str | None] = keyring.get_password
    return getter


def resolve_credentials(recipe: Site, settings: ServiceConfig | None) -> dict[str, str]:
    """The values of the credentials ``recipe`` declares, from ``settings`` (see the module
    docstring); a credential found nowhere is left out (the session reports it when it is
    required).

    :raises PermanentError: a ``*_file`` cannot be read, or the keyring is asked for and
        unavailable or fails (:class:`KeyringUnavailableError`), naming the config key.
    """
    if settings is None:
        return {}
    given = settings.credentials
    out: dict[str, str] = {}
    missing: list[str] = []
    for cred in recipe.credentials:
        key = f'recipes.services."{recipe.id}".credentials.{cred.name}_file'
        try:
            value = given.get(cred.name) or (
                read_secret_value(given.get(f"{cred.name}_file", ""), key)
            )
        except ConfigError as exc:
            raise PermanentError(str(exc)) from None
        if value:
            out[cred.name] = value
        else:
            missing.append(cred.name)
    if missing and settings.keyring:
        getter = _keyring_getter()
        for name in missing:
            try:
                found = getter(keyring_service(recipe.id), name)
            except Exception as exc:  # a backend's own error type (dbus, locked wallet…)
                raise KeyringUnavailableError(
                    f"reading {name!r} of {recipe.id!r} from the keyring failed:"
                    f" {type(exc).__name__}: {exc}"
                ) from None
            if found:
                out[name] = found
    return out


def read_secret_value(path: str, key: str) -> str:
    """The first line of the file at ``path`` (``""`` when ``path`` is empty).

    :raises ConfigError: the file cannot be read (naming ``key``).
    """
    return read_secret(None, path, key) or ""
