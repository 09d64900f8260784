"""Exception groups at component edges: the one set of helpers.

Trio nurseries raise ``ExceptionGroup`` (strict exception groups, trio's default since 0.25).
No group leaves a component: at its edge a component reduces the group to the one error that
matters (:func:`single`), or describes it in one line (:func:`describe`).
"""

from __future__ import annotations

import trio


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc``, depth first (``[exc]`` for a plain one)."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for sub in exc.exceptions:
            out.extend(leaves(sub))
        return out
    return [exc]


def single(exc: BaseException) -> BaseException:
    """What to raise at a component edge instead of ``exc``: ``exc`` itself when it is not a
    group; one ``trio.Cancelled`` when the group holds only cancellations; the one other leaf
    when there is exactly one besides cancellations; else the group unchanged."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    _cancelled, rest = exc.split(trio.Cancelled)
    if rest is None:
        return leaves(exc)[0]
    others = leaves(rest)
    return others[0] if len(others) == 1 else exc


def is_cancelled(exc: BaseException) -> bool:
    """True when ``exc`` is, or a group holding, a ``trio.Cancelled``."""
    return any(isinstance(leaf, trio.Cancelled) for leaf in leaves(exc))


def describe(exc: BaseException) -> str:
    """One line: ``Type: message`` for each leaf, joined by ``"; "``."""
    parts = []
    for leaf in leaves(exc):
        text = str(leaf)
        parts.append(f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__)
    return "; ".join(parts)
