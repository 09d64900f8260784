"""docs/configuration.md is the output of ``hathd config reference`` and documents every key."""

from __future__ import annotations

import typing
from pathlib import Path

import attrs

from conftest import run_cli
from hathd.confdoc import page, reference
from hathd.config import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _leaf_keys(cls: type, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        tp = hints[field.name]
        if attrs.has(tp):
            keys |= _leaf_keys(tp, f"{prefix}{field.name}.")
        elif typing.get_origin(tp) is dict and attrs.has(typing.get_args(tp)[1]):
            keys |= _leaf_keys(typing.get_args(tp)[1], f"{prefix}{field.name}.<name>.")
        else:
            keys.add(prefix + field.name)
    return keys


def test_docs_page_is_the_generated_reference() -> None:
    assert DOC.read_text(encoding="utf-8") == page(), (
        "docs/configuration.md is stale: run `hathd config reference > docs/configuration.md`"
    )


def test_every_key_has_a_row_with_a_meaning() -> None:
    rows = [line.split(" | ") for line in reference().splitlines()[2:]]
    documented = {row[0].removeprefix("| `").removesuffix("`") for row in rows}
    assert documented == _leaf_keys(Config)
    undocumented = [row[0] for row in rows if not row[4].removesuffix(" |").strip()]
    assert undocumented == []


def test_env_names_follow_the_override_rule() -> None:
    for line in reference().splitlines()[2:]:
        cells = line.split(" | ")
        key = cells[0].removeprefix("| `").removesuffix("`")
        if "<name>" in key:
            assert cells[3] == "—"
        else:
            assert cells[3] == "`HATHD_" + "__".join(p.upper() for p in key.split(".")) + "`"


async def test_cli_prints_the_reference() -> None:
    result = await run_cli("config", "reference")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == page()
