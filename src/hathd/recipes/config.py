"""Configuration of the image-host uploader (``[recipes]``).

Example::

    [recipes]
    roots = ["~/pics", "/srv/share"]     # uploads read only below these folders (default: ~)
    directory = "/etc/hathd/recipes"     # extra *.toml recipes; same id replaces a built-in
    global_rate = 10.0                   # requests/s over all services
    global_burst = 20

    [recipes.services."imx.to"]
    credentials = { api_key = "..." }
    base_url = "http://127.0.0.1:8081"   # point a recipe somewhere else (tests, mirrors)
    options = { thumbnail_size = "3" }
"""

from __future__ import annotations

import attrs

from hathd.confutil import FieldError, in_range


def _check_roots(_inst: object, attr: attrs.Attribute[list[str]], value: object) -> None:
    if not isinstance(value, list):
        raise FieldError(attr.name, "must be a list of absolute folders")
    for i, root in enumerate(value):
        if not isinstance(root, str) or not (root.startswith("/") or root.split("/")[0] == "~"):
            raise FieldError(
                f"{attr.name}[{i}]", f"must be an absolute folder or start with ~, got {root!r}"
            )
        if ".." in root.split("/"):
            raise FieldError(f"{attr.name}[{i}]", f"must not contain '..', got {root!r}")


def _check_templates(_inst: object, attr: attrs.Attribute[dict[str, str]], value: object) -> None:
    if not isinstance(value, dict):
        raise FieldError(attr.name, "must be a table of name = template")


@attrs.frozen
class ServiceConfig:
    """``[recipes.services."<id>"]``: per-service settings for the recipe with that id.

    ``credentials`` fill the names the recipe declares (redacted by ``config show``);
    ``base_url`` replaces the recipe's ``base_url``; ``options`` override the recipe's options;
    ``rate`` (requests/s), ``burst`` and ``concurrency`` (jobs at once) override its limits.
    """

    enabled: bool = True
    """``false`` hides the recipe (no uploads to this service)."""
    base_url: str | None = None
    """Replaces the recipe's ``base_url`` (mirrors, tests); unset = the recipe's."""
    credentials: dict[str, str] = attrs.field(factory=dict, metadata={"secret": True})
    """Values of the credentials the recipe declares, by name (secret); ``NAME_file`` names a
    file whose first line is the value instead."""
    keyring: bool = False
    """Read credentials found neither in ``credentials`` nor a ``NAME_file`` from the system
    keyring (service ``hathd:<id>``, user = the credential's name)."""
    options: dict[str, str] = attrs.field(factory=dict)
    """Overrides of the recipe's ``[options]``; unknown names are an error."""
    rate: float | None = attrs.field(default=None, validator=in_range(0.0, 10_000))
    """Requests/s for this service (0 = unlimited); unset = the recipe's ``[limits]``."""
    burst: int | None = attrs.field(default=None, validator=in_range(1, 10_000))
    """Requests this service may send back to back (bucket size); unset = the recipe's limit."""
    concurrency: int | None = attrs.field(default=None, validator=in_range(1, 1000))
    """Upload jobs of this service at once; unset = the recipe's ``[limits]``."""


@attrs.frozen
class RecipesConfig:
    """``[recipes]``: extra recipe directory, global request limit, per-service settings.

    ``global_rate`` is in requests/s over every service together (0 means unlimited);
    ``output_templates`` add or replace per-image output templates by name (``bbcode``,
    ``html``, ``markdown``, ``links`` are built in).
    """

    roots: list[str] = attrs.field(factory=lambda: ["~"], validator=_check_roots)
    """Folders uploads may read from (``~`` is the daemon user's home); a path outside them,
    through a symbolic link or not, is refused before any request. Empty = no uploads."""
    directory: str | None = None
    """Folder of extra ``*.toml`` recipes (same id replaces a built-in); unset = none."""
    global_rate: float = attrs.field(default=10.0, validator=in_range(0.0, 100_000))
    """Requests/s over all services together; 0 = unlimited."""
    global_burst: int = attrs.field(default=20, validator=in_range(1, 100_000))
    """Requests that may be sent back to back over all services (global bucket size)."""
    services: dict[str, ServiceConfig] = attrs.field(factory=dict)
    """Per-service settings by recipe id (``[recipes.services."<id>"]``)."""
    output_templates: dict[str, str] = attrs.field(factory=dict, validator=_check_templates)
    """Extra or replaced output templates, name → template over ``{url}``, ``{thumb}``, …"""
    templates_dir: str | None = None
    """Folder of Jinja2 output templates (``NAME.j2``: the format ``NAME``), rendered in a
    sandbox over the batch; unset = none."""
    template_files: dict[str, str] = attrs.field(factory=dict, validator=_check_templates)
    """More Jinja2 output templates, format name → file path."""
