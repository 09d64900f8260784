"""Checks of the engine's inputs: a submission's fields, a priority, a timeout.

Each check raises :class:`~hathd.errors.InvalidInput` naming the offending field; the job API
answers it ``400`` with that field (``docs/engine.md``).
"""

from __future__ import annotations

import json
import math

from hathd.engine.api import PRIORITY_MAX, PRIORITY_MIN, JobSpec
from hathd.errors import InvalidInput


def check_priority(value: object, field: str = "priority") -> int:
    """``value`` as a priority: an integer in ``PRIORITY_MIN..PRIORITY_MAX`` (±10⁹).

    :raises InvalidInput: naming ``field``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer, got {value!r}")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise InvalidInput(field, f"must be between {PRIORITY_MIN} and {PRIORITY_MAX}")
    return value


def check_timeout(value: object, field: str = "timeout") -> float:
    """``value`` as a job timeout: a finite number of seconds > 0 (an integer too large for a
    float is refused, not raised as ``OverflowError``).

    :raises InvalidInput: naming ``field``.
    """
    problem = InvalidInput(field, "must be a finite number of seconds > 0")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise problem
    try:
        seconds = float(value)
    except OverflowError:
        raise problem from None
    if not math.isfinite(seconds) or not seconds > 0:
        raise problem
    return seconds


def check_json_object(value: object, field: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(field, f"not JSON-serialisable: {exc}") from None


def validate_spec(spec: JobSpec) -> None:
    """Check a submission's shape.

    :raises InvalidInput: naming the field (``kind``, ``target``, ``domain``, ``priority``
        (an integer within ±10⁹), ``timeout`` (finite seconds > 0), ``params`` (strict JSON:
        no NaN or infinity)).
    """
    if not isinstance(spec.kind, str) or not spec.kind:
        raise InvalidInput("kind", "must be a non-empty string")
    if not isinstance(spec.target, str) or not spec.target:
        raise InvalidInput("target", "must be a non-empty string")
    if not isinstance(spec.domain, str) or not spec.domain:
        raise InvalidInput("domain", "must be a non-empty string")
    check_priority(spec.priority)
    if spec.timeout is not None:
        check_timeout(spec.timeout)
    if not isinstance(spec.params, dict):
        raise InvalidInput("params", "must be a JSON object")
    check_json_object(spec.params, "params")


def as_invalid(exc: ValueError, prefix: str) -> InvalidInput:
    """A validator's ``ValueError`` as :class:`InvalidInput`, its field prefixed (``[2].``).
    A plain ``ValueError`` names its field as ``"field: message"``; else ``params`` is blamed."""
    if isinstance(exc, InvalidInput):
        return InvalidInput(prefix + exc.field, exc.message)
    text = str(exc)
    head, sep, rest = text.partition(":")
    head = head.strip()
    if sep and head and " " not in head:
        return InvalidInput(prefix + head, rest.strip())
    return InvalidInput(prefix + "params", text)
