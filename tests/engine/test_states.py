"""The job state machine's table (pure, no I/O): every (state, event) pair, random event
sequences, and the table drawn in the module docstring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hathd.engine import api, states
from hathd.engine.states import JobEvent, JobState, next_state
from hathd.errors import HathdError, InvalidTransition, JobConflict

Q, R, W, P = JobState.QUEUED, JobState.RUNNING, JobState.WAITING, JobState.PAUSED
D, F, C = JobState.DONE, JobState.FAILED, JobState.CANCELLED

# written out independently of hathd.engine.states.TRANSITIONS
EXPECTED = {
    (Q, JobEvent.DISPATCH): R,
    (R, JobEvent.SUCCEED): D,
    (R, JobEvent.FAIL): F,
    (R, JobEvent.BACK_OFF): W,
    (R, JobEvent.REQUEUE): Q,
    (W, JobEvent.WAKE): Q,
    (Q, JobEvent.PAUSE): P,
    (R, JobEvent.PAUSE): P,
    (W, JobEvent.PAUSE): P,
    (P, JobEvent.RESUME): Q,
    (Q, JobEvent.CANCEL): C,
    (R, JobEvent.CANCEL): C,
    (W, JobEvent.CANCEL): C,
    (P, JobEvent.CANCEL): C,
    (D, JobEvent.RETRY): Q,
    (F, JobEvent.RETRY): Q,
    (C, JobEvent.RETRY): Q,
}

ALL_PAIRS = [(s, e) for s in JobState for e in JobEvent]


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: str(v))
def test_every_pair(state: JobState, event: JobEvent) -> None:
    if (state, event) in EXPECTED:
        assert next_state(state, event) is EXPECTED[state, event]
        assert states.allowed(state, event)
    else:
        assert not states.allowed(state, event)
        with pytest.raises(InvalidTransition) as info:
            next_state(state, event)
        assert info.value.state == str(state)
        assert info.value.event == str(event)
        assert str(state) in str(info.value)
        assert str(event) in str(info.value)


def test_table_is_exactly_the_expected_one() -> None:
    assert dict(states.TRANSITIONS) == EXPECTED


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        states.TRANSITIONS[D, JobEvent.DISPATCH] = R  # type: ignore[index]


def test_invalid_transition_is_a_conflict_with_a_stable_code() -> None:
    with pytest.raises(JobConflict) as info:
        next_state(D, JobEvent.CANCEL)
    assert isinstance(info.value, HathdError)
    assert info.value.code == "invalid_transition"
    assert JobConflict.code == "job_conflict"


def test_state_sets_follow_the_table() -> None:
    assert {D, F, C} == states.FINAL_STATES
    assert states.ACTIVE_STATES == {Q, R, W, P} == api.ACTIVE_STATES
    assert states.INITIAL_STATE is Q
    assert states.sources(JobEvent.RETRY) == states.FINAL_STATES
    assert states.sources(JobEvent.CANCEL) == states.ACTIVE_STATES
    assert states.sources(JobEvent.PAUSE) == {Q, R, W}
    assert states.sources(JobEvent.WAKE) == {W}
    for event in JobEvent:
        assert states.sources(event) == {s for (s, e) in EXPECTED if e is event}


def test_every_state_is_reachable_from_the_initial_one() -> None:
    seen = {states.INITIAL_STATE}
    frontier = [states.INITIAL_STATE]
    while frontier:
        state = frontier.pop()
        for event in JobEvent:
            if states.allowed(state, event):
                nxt = next_state(state, event)
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
    assert seen == set(JobState)


def test_the_drawn_table_matches() -> None:
    doc = states.__doc__
    assert doc is not None
    lines = doc.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("event \\ state"))
    columns = [JobState(name) for name in lines[header].split()[3:]]
    assert columns == list(JobState)
    drawn = {}
    for line in lines[header + 1 : header + 1 + len(JobEvent)]:
        event, *cells = line.split()
        assert len(cells) == len(columns)
        for state, cell in zip(columns, cells, strict=True):
            if cell != "·":
                drawn[state, JobEvent(event)] = JobState(cell)
    assert drawn == EXPECTED


@given(st.lists(st.sampled_from(list(JobEvent)), max_size=60))
def test_random_event_sequences(events: list[JobEvent]) -> None:
    """Applying any sequence of events from a new job: an event either moves the job as the
    table says or raises and leaves it where it was; a final state is left only by retry."""
    state = states.INITIAL_STATE
    for event in events:
        try:
            nxt = next_state(state, event)
        except InvalidTransition:
            assert (state, event) not in EXPECTED
            continue
        assert nxt is EXPECTED[state, event]
        if state in states.FINAL_STATES:
            assert event is JobEvent.RETRY
            assert nxt is Q
        if nxt in states.FINAL_STATES:
            assert state in states.ACTIVE_STATES
        state = nxt


def test_the_table_in_docs_engine_md_matches() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "engine.md").read_text(encoding="utf-8")
    rows = [
        line.strip()
        for line in doc.splitlines()
        if line.strip().startswith("| `")
        and line.strip().split("|")[1].strip("` ") in set(JobEvent)
    ]
    assert len(rows) == len(JobEvent)
    drawn = {}
    for row in rows:
        event, *cells = [cell.strip().strip("`") for cell in row.strip("|").split("|")]
        assert len(cells) == len(JobState)
        for state, cell in zip(JobState, cells, strict=True):
            if cell != "·":
                drawn[state, JobEvent(event)] = JobState(cell)
    assert drawn == EXPECTED


def _is_str_call(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str"


def _state_writes() -> list[str]:
    """Every place in the engine's job-owning modules that assigns a ``state`` attribute or
    builds a dictionary with a ``"state"`` key (a row change; ``str(...)`` values are replies),
    as ``module:function``. ``cli.py`` and ``http.py`` speak HTTP and own no job state."""
    root = Path(states.__file__).parent
    found = []
    for path in sorted(root.glob("*.py")):
        if path.name in ("cli.py", "http.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                targets: list[ast.expr] = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                    targets = [node.target]
                hit = any(isinstance(t, ast.Attribute) and t.attr == "state" for t in targets)
                if isinstance(node, ast.Dict):
                    hit = hit or any(
                        isinstance(k, ast.Constant) and k.value == "state" and not _is_str_call(v)
                        for k, v in zip(node.keys, node.values, strict=True)
                    )
                if hit:
                    found.append(f"{path.stem}:{func.name}")
    return sorted(set(found))


def test_every_state_change_goes_through_the_table() -> None:
    """Only the shell's helpers (which call next_state) write a job's state; a record takes
    the stored state when it is built."""
    assert _state_writes() == [
        "records:__init__",
        "shell:_move_state",
        "shell:_row_change",
        "shell:_set_state",
    ]
