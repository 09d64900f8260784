"""Every admin route that takes a body answers malformed input with a 4xx, never a 500, and the
daemon goes on working (property-based: Hypothesis generates the bodies).

The routes are enumerated from the app's ``url_map`` with every plugin enabled, so a route added
later is covered without touching this test. The app is served by hypercorn on the unix socket
(as the daemon serves it), in a thread of its own with its own Trio loop, so Hypothesis can
drive it from plain synchronous examples.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hathd.admin.app import create_app
from hathd.config import structure
from hathd.daemon import default_plugins
from hathd.engine import Engine
from hathd.engine.download import download_spec
from hathd.errors import UnencodableText
from hathd.jsonbody import MAX_DEPTH, MalformedBody, parse_json
from hathd.runtime import open_runtime
from hathd.store import open_store

BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
KEYS = (
    "url",
    "query",
    "dedupe_key",
    "kind",
    "target",
    "domain",
    "params",
    "priority",
    "timeout",
    "retry_preset",
    "dest",
    "filename",
    "size",
    "sha256",
    "jobs",
    "position",
    "how",
    "paths",
    "service",
    "gallery",
    "urls",
    "update_method",
    "no_hash",
)


@attrs.define
class Served:
    socket: Path
    routes: list[tuple[str, str]]  # (method, rule)
    job_id: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = tmp_path_factory.mktemp("malformed") / "state"
    ready = threading.Event()
    stop: list[Any] = []  # (trio token, stop event)
    found: list[Served] = []
    failure: list[BaseException] = []

    async def run() -> None:
        config = structure(
            {
                "q4d": {"enabled": True},
                "fanfic": {"enabled": True},
                "hath": {"enabled": True},
                "anime": {"enabled": True, "library": str(state / "anime")},
                "media_servers": {"servers": {"tv": {"url": "http://127.0.0.1:9"}}},
            }
        )
        async with open_runtime(config, state) as rt, trio.open_nursery() as nursery:
            plugins = default_plugins()
            enabled = [p for p in plugins if p.enabled(config)]
            assert {p.name for p in enabled} == {p.name for p in plugins}
            for plugin in enabled:
                await plugin.setup(rt)
            engine = rt.engine
            assert isinstance(engine, Engine)
            await nursery.start(engine.serve)
            await engine.pause_queue()  # nothing submitted here runs
            job = await engine.submit(download_spec("http://127.0.0.1:9/seed.bin"))
            app = create_app(rt, "token", enabled, plugins)
            routes = [
                (method, rule.rule)
                for rule in app.url_map.iter_rules()
                for method in sorted(rule.methods or ())
                if method in BODY_METHODS
            ]
            hyper = HyperConfig()
            hyper.bind = [f"unix:{rt.paths.socket}"]
            hyper.graceful_timeout = 0.5
            done = trio.Event()
            await nursery.start(partial(serve, app, hyper, shutdown_trigger=done.wait))
            found.append(Served(rt.paths.socket, routes, job.job.id))
            stop.append((trio.lowlevel.current_trio_token(), done))
            ready.set()
            await done.wait()
            nursery.cancel_scope.cancel()

    def thread() -> None:
        try:
            trio.run(run)
        except BaseException as exc:
            failure.append(exc)
        finally:
            ready.set()

    worker = threading.Thread(target=thread, name="admin-under-test", daemon=True)
    worker.start()
    ready.wait(60)
    if failure:
        raise failure[0]
    assert found, "the admin app did not start"
    try:
        yield found[0]
    finally:
        token, done = stop[0]
        token.run_sync_soon(done.set)
        worker.join(30)
        if failure:
            raise failure[0]


def client(served: Served) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(served.socket))
    return httpx.Client(transport=transport, base_url="http://hathd", timeout=30.0)


any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    surrogates,
    st.sampled_from(
        ["http://127.0.0.1:9/x", "download", "transfer", "set", "force", "/nonexistent"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), any_text, surrogates), inner, max_size=4),
    ),
    max_leaves=12,
)
shaped = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
raw = st.one_of(
    st.binary(max_size=40),  # not JSON, not UTF-8
    st.integers(min_value=MAX_DEPTH - 2, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
    st.just(b'{"url": "http://a.example/\\ud800"}'),
    st.just(b'{"jobs": [{"url": "http://a.example/x", "dedupe_key": "\\udfff"}]}'),
    st.just(b"1e400"),
    st.just(b'{"priority": 1e999}'),
)
bodies = st.one_of(
    st.one_of(values, shaped).map(lambda v: json.dumps(v, ensure_ascii=True).encode()),
    raw,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), body=bodies)
def test_no_body_gets_a_server_error(served: Served, data: st.DataObject, body: bytes) -> None:
    method, rule = data.draw(st.sampled_from(served.routes), label="route")
    path = rule.replace("<job_id>", data.draw(st.sampled_from([served.job_id, "nope"])))
    # any other path argument (a key id, a series key, a backup name): a few hostile values
    path = re.sub(
        r"<(?:\w+:)?\w+>",
        lambda _m: data.draw(st.sampled_from(["nope", "1", "..", "%00", "a" * 300])),
        path,
    )
    with client(served) as http:
        reply = http.request(method, path, content=body)
        assert reply.status_code < 500, (method, path, body, reply.text)
        if reply.status_code == 400:
            assert reply.json()["error"], reply.text
        # the daemon goes on working
        assert http.get("/api/v1/queue").status_code == 200


def test_every_body_route_is_exercised(served: Served) -> None:
    rules = {rule for _method, rule in served.routes}
    assert "/api/v1/jobs" in rules
    assert "/api/v1/uploads" in rules
    assert "/api/v1/fanfic/stories" in rules


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://a.example/x", "dedupe_key": "\ud800"}, "dedupe_key"),
        ({"url": "http://a.example/\ud800"}, "url"),
        ({"jobs": [{"url": "http://a.example/x"}, {"query": "\udc00"}]}, "jobs[1].query"),
        ({"\ud800": 1}, "body"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(
    served: Served, body: Any, field: str
) -> None:
    with client(served) as http:
        reply = http.post("/api/v1/jobs", content=json.dumps(body).encode())
        assert reply.status_code == 400
        assert reply.json()["field"] == field
        assert "lone surrogate" in reply.json()["error"]
        for route in ("/api/v1/uploads", "/api/v1/fanfic/stories"):
            reply = http.post(route, content=json.dumps(body).encode())
            assert reply.status_code == 400, route
            assert "lone surrogate" in reply.json()["error"], route


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(MalformedBody, match="nested deeper"):
        parse_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


async def test_store_refuses_unencodable_text_and_goes_on(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        await store.execute("CREATE TABLE t (s TEXT)")
        with pytest.raises(UnencodableText, match="ud800"):
            await store.execute("INSERT INTO t VALUES (?)", ("a\ud800b",))
        with pytest.raises(UnencodableText):
            await store.query("SELECT * FROM t WHERE s = ?", ("\udfff",))
        await store.execute("INSERT INTO t VALUES (?)", ("fine",))
        assert [r["s"] for r in await store.query("SELECT s FROM t")] == ["fine"]


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("gallery", {"gid": 1, "title": "../../x"}, "params"),
        (
            "gallery",
            {"gid": "x", "filecount": 1, "minxres": "org", "title": "t", "files": []},
            "params",
        ),
        ("transfer", {"path": "/x", "hash": "H", "code": "M", "dest_dir": "/sub/.."}, "dest_dir"),
        ("download", {"dest": "../out"}, "dest"),
    ],
)
def test_job_kinds_check_their_params_at_submit(
    served: Served, kind: str, params: dict[str, Any], field: str
) -> None:
    body = {"kind": kind, "target": "http://127.0.0.1:9/x", "domain": "127.0.0.1", "params": params}
    with client(served) as http:
        reply = http.post("/api/v1/jobs", content=json.dumps(body).encode())
        assert reply.status_code == 400, reply.text
        assert reply.json()["field"] == field, reply.text
