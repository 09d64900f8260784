"""Type rules in Queue4Download's ``Types.config`` format, with defined semantics (sans-IO).

One rule per line: ``FIELD CONDITIONAL VALUE CODE [ASSIGNED]``. Source of the format:
``Q4D/Types.config`` (header comments) and ``Q4D/Queue4Download.sh`` ``SetType``.

Semantics in hathd (docs/q4d.md lists where they differ from the original script):

- Words are split like a POSIX shell (:mod:`shlex`): quotes are stripped, so ``"A"`` is the
  code ``A`` and ``""`` is the empty string; a quoted value may hold spaces. ``#`` outside
  quotes starts a comment (quote a value that contains ``#``); blank lines are skipped.
- FIELD (case-insensitive): ``KEY`` (the name: last component of the path), ``PATH``,
  ``HASH``, ``LABEL``, ``TRACKER``. The ``Down`` payload carries no label or tracker, so on
  the home side those are empty unless the caller supplies them.
- CONDITIONAL (case-insensitive): ``IS`` = glob match of the whole field (:func:`fnmatchcase`,
  like bash ``==`` with an unquoted right side), ``CONTAINS`` = substring, ``NOT`` = the glob
  does not match. Matching is case-sensitive, as in bash.
- ASSIGNED (optional, ``""`` = none): a tier-2 guard: the rule applies only when the code so
  far equals ASSIGNED.
- Evaluation starts from the payload's code; rules run top to bottom; every matching rule
  replaces the code (last match wins); an empty result becomes the default code.

Codes map to folders with :func:`destination`; an unknown code goes to the ``ERR`` folder.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path

import attrs


class RulesError(ValueError):
    """A rules file is invalid; ``problems`` holds ``(line number, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[int, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            "; ".join(f"{source} line {line}: {message}" for line, message in problems)
        )


class RuleField(StrEnum):
    """What a rule looks at."""

    KEY = "KEY"
    PATH = "PATH"
    HASH = "HASH"
    LABEL = "LABEL"
    TRACKER = "TRACKER"


class Conditional(StrEnum):
    """How a rule compares."""

    IS = "IS"
    CONTAINS = "CONTAINS"
    NOT = "NOT"


@attrs.frozen
class Rule:
    """One parsed line: ``field conditional value → code`` if the code so far is ``assigned``."""

    field: RuleField
    conditional: Conditional
    value: str
    code: str
    assigned: str = ""
    line: int = 0

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether the condition holds for ``fields`` (a missing field is the empty string)."""
        subject = fields.get(self.field.value, "")
        if self.conditional is Conditional.IS:
            return fnmatchcase(subject, self.value)
        if self.conditional is Conditional.CONTAINS:
            return self.value in subject
        return not fnmatchcase(subject, self.value)


def parse_rules(text: str, *, source: str = "rules") -> list[Rule]:
    """Parse Types.config text.

    :raises RulesError: listing every bad line (unknown field or conditional, too few words,
        unbalanced quotes, an empty code).
    """
    rules: list[Rule] = []
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(raw, comments=True)
        except ValueError as exc:
            problems.append((number, f"cannot split {raw.strip()!r}: {exc}"))
            continue
        if not words:
            continue
        if len(words) < 4 or len(words) > 5:
            problems.append(
                (number, f"need FIELD CONDITIONAL VALUE CODE [ASSIGNED], got {len(words)} words")
            )
            continue
        field_name, cond_name, value, code = words[:4]
        assigned = words[4] if len(words) == 5 else ""
        try:
            field = RuleField(field_name.upper())
        except ValueError:
            names = ", ".join(f.value for f in RuleField)
            problems.append((number, f"unknown FIELD {field_name!r} (one of {names})"))
            continue
        try:
            cond = Conditional(cond_name.upper())
        except ValueError:
            problems.append((number, f"unknown CONDITIONAL {cond_name!r} (IS, CONTAINS, NOT)"))
            continue
        if not code:
            problems.append((number, "empty CODE"))
            continue
        rules.append(Rule(field, cond, value, code, assigned, number))
    if problems:
        raise RulesError(source, problems)
    return rules


def event_fields(path: str, hash_: str, *, label: str = "", tracker: str = "") -> dict[str, str]:
    """The rule fields of a ``Down`` event: ``KEY`` is the last component of ``path``."""
    key = path.rstrip("/").rsplit("/", 1)[-1]
    return {"KEY": key, "PATH": path, "HASH": hash_, "LABEL": label, "TRACKER": tracker}


def classify(
    rules: Iterable[Rule], fields: Mapping[str, str], *, code: str = "", default: str = "V"
) -> str:
    """The type code after applying ``rules`` to ``fields``, starting from ``code``."""
    current = code
    for rule in rules:
        if rule.assigned and current != rule.assigned:
            continue
        if rule.matches(fields):
            current = rule.code
    return current or default


def destination(code: str, type_map: Mapping[str, str], root: Path) -> tuple[str, Path]:
    """The code actually used and its local folder.

    A relative folder is taken under ``root``; an unknown code becomes ``ERR``, whose folder is
    ``type_map["ERR"]`` or ``root / "ERR"``. ``~`` is expanded.

    :raises RuntimeError: a ``~user`` folder names an unknown user (``Path.expanduser``).
    """
    if code in type_map and code != "ERR":
        return code, root / Path(type_map[code]).expanduser()
    err = type_map.get("ERR")
    return "ERR", (root / Path(err).expanduser()) if err else root / "ERR"


def load_rules(lines: Sequence[str], file_text: str | None, *, source: str) -> list[Rule]:
    """Rules from a rules file's text (first) followed by inline ``lines``.

    :raises RulesError: either part is invalid.
    """
    rules: list[Rule] = []
    if file_text is not None:
        rules.extend(parse_rules(file_text, source=source))
    rules.extend(parse_rules("\n".join(lines), source="q4d.rules"))
    return rules
