"""The configuration reference, generated from the attrs classes themselves.

``hathd config reference`` prints it as Markdown; ``docs/configuration.md`` holds its output
and a test keeps the two equal, so the documented keys, defaults and environment names cannot
drift from the code. A key's meaning is the attribute docstring under its field (a string
literal right after the field), or the first line of its class docstring for the section.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import textwrap
import typing
from collections.abc import Iterator
from functools import cache
from typing import Any

import attrs

from hathd.config import ENV_PREFIX, Config


@cache
def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of ``cls``: ``{field: first paragraph}``."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.strip().split("\n\n")[0].split())
    return docs


def _default(field: attrs.Attribute[Any]) -> Any:
    default = field.default
    factory = getattr(default, "factory", None)
    if hasattr(default, "takes_self") and callable(factory):  # an attrs.Factory
        return factory()
    return default


def _show(value: Any, secret: bool) -> str:
    if value is None or value == "" or (secret and value == []):
        return "unset"
    if secret:
        return "(secret)"
    if attrs.has(type(value)):
        return "(section)"
    return f"`{json.dumps(value)}`"


def _type_name(tp: Any) -> str:
    text = getattr(tp, "__name__", None) if not typing.get_args(tp) else None
    return text or str(tp).replace("typing.", "")


def _rows(cls: type, path: tuple[str, ...]) -> Iterator[tuple[str, str, str, str, str]]:
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    for field in attrs.fields(cls):
        tp = hints[field.name]
        key = (*path, field.name)
        if attrs.has(tp):
            yield from _rows(tp, key)
            continue
        if typing.get_origin(tp) is dict and attrs.has(typing.get_args(tp)[1]):
            item = typing.get_args(tp)[1]
            yield from _rows(item, (*key, "<name>"))
            continue
        env = ENV_PREFIX + "__".join(k.upper() for k in key) if "<name>" not in key else ""
        yield (
            ".".join(key),
            _type_name(tp),
            _show(_default(field), bool(field.metadata.get("secret"))),
            f"`{env}`" if env else "—",
            docs.get(field.name, ""),
        )


PREAMBLE = """\
# Configuration reference

hathd reads one TOML file, given with `--config FILE` (`hathd --config /etc/hathd/hathd.toml run`).
Every key has a default, so no file at all is a valid configuration. Each key can also be set in
the environment as `HATHD_<SECTION>__<KEY>` (nested sections join with `__`, for example
`HATHD_ENGINE__GLOBAL_LANE__RATE=2`); the environment wins over the file. An environment value
is read by the type of its key: a text key takes it as it is, a boolean accepts
`true/false/1/0/yes/no/on/off`, numbers and lists are TOML values (`3`, `0.5`, `[60, 300]`).
Keys under a `<name>` table have no fixed environment name; one whose name is a plain
lowercase word can still be set (`HATHD_RECIPES__SERVICES__IMAGEBAM__CREDENTIALS__PASSWORD`),
a pattern such as `[engine.lanes."*.example.org"]` cannot.

Values are checked by type: `workers = 2.7` or `port = "8750"` is an error, not a conversion
(a number key that holds seconds or a rate accepts an integer).

`hathd config check FILE` lists every problem with its key path and exits 1;
`hathd config show` prints the effective configuration with secrets as `***`.
Secrets are better kept in the files named by the `*_file` keys than in the TOML file itself.

This page is the output of `hathd config reference`; a test keeps them equal.

"""


def page() -> str:
    """The whole ``docs/configuration.md``: :data:`PREAMBLE`, then :func:`reference`."""
    return PREAMBLE + reference()


def reference() -> str:
    """The Markdown reference of every configuration key, section by section."""
    out = [
        "| key | type | default | environment | meaning |",
        "|---|---|---|---|---|",
    ]
    for key, tp, default, env, meaning in _rows(Config, ()):
        cell = meaning.replace("|", "\\|")
        out.append(f"| `{key}` | {tp.replace('|', 'or')} | {default} | {env} | {cell} |")
    return "\n".join(out) + "\n"
