"""``POST /api/v1/queue/reorder`` (the queue page's drag and drop) on a real daemon."""

from __future__ import annotations

from pathlib import Path

import httpx

from web.authkit import running_node


async def pending(client: httpx.AsyncClient) -> list[str]:
    reply = await client.get("/api/v1/jobs", params={"state": "queued,waiting,paused"})
    assert reply.status_code == 200, reply.text
    return [j["id"] for j in reply.json()["jobs"]]


async def add(client: httpx.AsyncClient, count: int, **extra: object) -> list[str]:
    jobs = [{"url": f"http://127.0.0.1:9/file{i}", **extra} for i in range(count)]
    reply = await client.post("/api/v1/jobs", json={"jobs": jobs})
    assert reply.status_code == 201, reply.text
    return [j["job"]["id"] for j in reply.json()["jobs"]]


async def test_reorder_full_and_partial_lists(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.bearer() as client:
        assert (await client.post("/api/v1/queue/pause")).status_code == 200
        a, b, c, d = await add(client, 4)
        reply = await client.post("/api/v1/queue/reorder", json={"item_ids": [d, b, a, c]})
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"item_ids": [d, b, a, c]}
        assert await pending(client) == [d, b, a, c]
        # a partial list keeps the places its jobs hold: d and a swap, b and c stay put
        reply = await client.post("/api/v1/queue/reorder", json={"item_ids": [a, d]})
        assert reply.status_code == 200, reply.text
        assert await pending(client) == [a, b, d, c]


async def test_reorder_refuses_bad_bodies_and_non_pending_jobs(tmp_path: Path) -> None:
    async with running_node(tmp_path) as node, node.bearer() as client:
        await client.post("/api/v1/queue/pause")
        a, b = await add(client, 2)
        for body in (
            [a, b],
            {"ids": [a, b]},
            {"item_ids": "a"},
            {"item_ids": [a, 3]},
            {"item_ids": [a, a]},
            {"item_ids": [a], "extra": 1},
        ):
            reply = await client.post("/api/v1/queue/reorder", json=body)
            assert reply.status_code == 400, (body, reply.text)
            assert reply.json()["field"] == "item_ids"
        reply = await client.post("/api/v1/queue/reorder", json={"item_ids": [b, "nosuchjob"]})
        assert reply.status_code == 409, reply.text
        assert "nosuchjob" in reply.json()["error"]
        assert await pending(client) == [a, b], "a refused reorder changes nothing"
