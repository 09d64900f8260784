"""The exception-group helpers used at component edges."""

from __future__ import annotations

import pytest
import trio

from hathd.excgroups import describe, is_cancelled, leaves, single


async def _group_of(*errors: BaseException) -> BaseExceptionGroup[BaseException]:
    async def boom(exc: BaseException) -> None:
        raise exc

    try:
        async with trio.open_nursery() as nursery:
            for exc in errors:
                nursery.start_soon(boom, exc)
    except BaseExceptionGroup as group:
        return group
    raise AssertionError("the nursery raised nothing")


async def test_single_reduces_a_real_nursery_group_to_its_one_error() -> None:
    group = await _group_of(ValueError("bad"))
    leaf = single(group)
    assert isinstance(leaf, ValueError)
    assert str(leaf) == "bad"
    assert single(leaf) is leaf


async def test_single_keeps_a_group_of_several_errors() -> None:
    group = await _group_of(ValueError("a"), KeyError("b"))
    assert single(group) is group
    assert sorted(type(e).__name__ for e in leaves(group)) == ["KeyError", "ValueError"]
    assert describe(group) in ("ValueError: a; KeyError: 'b'", "KeyError: 'b'; ValueError: a")


async def test_cancellation_is_found_in_a_group_and_raised_as_one_cancelled() -> None:
    caught: list[BaseException] = []
    with trio.CancelScope() as scope:

        async def cancel_then_fail() -> None:
            scope.cancel()
            raise ValueError("late")

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                nursery.start_soon(cancel_then_fail)
        except BaseExceptionGroup as group:
            caught.append(group)
    [group] = caught
    assert is_cancelled(group)
    assert isinstance(single(group), ValueError)  # the one error besides cancellation
    only_cancelled, _rest = group.split(trio.Cancelled)
    assert only_cancelled is not None
    assert isinstance(single(only_cancelled), trio.Cancelled)
    nested = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [KeyboardInterrupt()])])
    assert isinstance(leaves(nested)[0], KeyboardInterrupt)
    assert not is_cancelled(ValueError())
    assert describe(ValueError()) == "ValueError"


def test_nested_one_member_groups_unwrap() -> None:
    inner = OSError(28, "No space left on device")
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [inner])])
    assert single(group) is inner
    assert leaves(group) == [inner]
    with pytest.raises(OSError):
        raise single(group)
