"""The error tree of hathd.errors: one stable code per class, the drawn tree kept true."""

from __future__ import annotations

import inspect
import re

from hathd import errors
from hathd.engine import api, core


def _classes() -> list[type[errors.HathdError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, errors.HathdError) and obj.__module__ == errors.__name__
    ]


def test_every_class_has_its_own_code() -> None:
    classes = _classes()
    assert len(classes) >= 13
    codes = [cls.code for cls in classes]
    for cls in classes:
        assert "code" in vars(cls), f"{cls.__name__} inherits its code"
        assert re.fullmatch(r"[a-z_]+", cls.code), cls.code
    assert len(set(codes)) == len(codes), codes


def test_the_drawn_tree_matches_the_classes() -> None:
    doc = errors.__doc__
    assert doc is not None
    drawn: dict[str, tuple[int, str]] = {}
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^\s*([│├└─ ]*)([A-Z]\w+)(?: \(\w+\))?\s{2,}([a-z_]+)\b", line)
        if match is None:
            continue
        depth = len(match.group(1))
        name = match.group(2)
        drawn[name] = (depth, match.group(3))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    assert drawn["HathdError"] == (0, "error")
    classes = {cls.__name__: cls for cls in _classes()}
    assert set(drawn) == set(classes)
    for name, cls in classes.items():
        assert drawn[name][1] == cls.code, name
        if name != "HathdError":
            assert classes[parents[name]] in cls.__bases__, (name, parents[name])


def test_engine_names_are_the_tree_classes() -> None:
    assert api.InvalidInput is errors.InvalidInput
    assert core.InvalidInput is errors.InvalidInput
    assert core.JobNotFound is errors.JobNotFound
    assert core.JobConflict is errors.JobConflict
    exc = errors.InvalidInput("priority", "must be an integer")
    assert isinstance(exc, ValueError)
    assert str(exc) == "priority: must be an integer"
    assert (exc.field, exc.message, exc.code) == ("priority", "must be an integer", "invalid_input")
    assert issubclass(errors.InvalidTransition, errors.JobConflict)
