"""``fetchqueue``/``dlfetch``/``dlfails`` over real HTTP against the fake control server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from fakes.hath_control import FakeReply, FakeRequest, open_fake_control
from fakes.hath_dl import FakeGallery, GalleryQueue
from gallery.helpers import CREDS
from hathd.errors import RetryableError
from hathd.gallery.rpc import DownloaderRpc, RpcTarget, RpcUnavailable, standalone_rpc
from hathd.hath.gallery_meta import (
    GalleryMeta,
    InvalidRequest,
    NoPendingDownloads,
    parse_queue_reply,
)
from hathd.hath.protocol import Credentials, ServerClock
from hathd.hath.rpc import RpcClient


def test_target_parsing() -> None:
    assert RpcTarget.parse("rpc.example") == RpcTarget("rpc.example", 80)
    assert RpcTarget.parse("127.0.0.1:8080") == RpcTarget("127.0.0.1", 8080)
    assert RpcTarget.parse("[::1]:81", "16/rpc?") == RpcTarget("::1", 81, "16/rpc?")
    assert RpcTarget.parse("127.0.0.1:8080").bootstrap == "127.0.0.1:8080"
    assert RpcTarget.parse("rpc.example").bootstrap == "rpc.example"
    with pytest.raises(ValueError):
        RpcTarget.parse("host:0")


def client_for(host: str, creds: Credentials = CREDS) -> RpcClient:
    return RpcClient(creds, bootstrap=host)


async def test_fetchqueue_marks_done_and_drains() -> None:
    with trio.fail_after(30):
        async with (
            open_fake_control(CREDS) as fake,
            standalone_rpc(RpcTarget.parse(fake.rpc_host), lambda: CREDS, ServerClock())() as rpc,
        ):
            queue = GalleryQueue.attach(fake)
            first = queue.add(FakeGallery.build(1, "One", [10]))
            queue.add(FakeGallery.build(2, "Two", [10], minxres="780"))
            reply = parse_queue_reply(await rpc.fetchqueue())
            assert isinstance(reply, GalleryMeta)
            assert reply.gid == 1
            assert reply.files[0].sha1 == first.file(1).sha1
            reply = parse_queue_reply(await rpc.fetchqueue(""))
            assert isinstance(reply, GalleryMeta)
            assert reply.gid == 1  # not marked done yet: the server sends it again
            reply = parse_queue_reply(await rpc.fetchqueue("1;org"))
            assert isinstance(reply, GalleryMeta)
            assert (reply.gid, reply.minxres) == (2, "780")
            assert parse_queue_reply(await rpc.fetchqueue("2;780")) == NoPendingDownloads()
            assert queue.done == ["1;org", "2;780"]
            # The standalone client synced its clock once, on opening.
            assert fake.count("server_stat") == 1


async def test_key_expired_resyncs_the_clock() -> None:
    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake:
            fake.skew = 7200  # the server's clock is two hours ahead of ours
            queue = GalleryQueue.attach(fake)
            client = client_for(fake.rpc_host)
            try:
                rpc = DownloaderRpc(client)
                assert parse_queue_reply(await rpc.fetchqueue()) == NoPendingDownloads()
            finally:
                await client.aclose()
            assert fake.count("server_stat") == 1
            assert rpc.clock.offset >= 7199
            assert queue.fetchqueue_adds == [""]


async def test_wrong_key_is_an_invalid_request() -> None:
    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            queue.add(FakeGallery.build(1, "One", [10]))
            client = client_for(fake.rpc_host, Credentials(CREDS.client_id, "X" * 20))
            try:
                reply = await DownloaderRpc(client).fetchqueue()
            finally:
                await client.aclose()
            assert parse_queue_reply(reply) == InvalidRequest()
            assert queue.rejected == 1


async def test_reply_without_content_length_is_retryable() -> None:
    async def chunked(req: FakeRequest) -> FakeReply:
        async def body() -> AsyncIterator[bytes]:
            yield b"NO_PENDING_DOWNLOADS\n"

        return FakeReply(200, chunks=body, content_length=None)

    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake:
            fake.add_route("/15/dl", chunked)
            client = client_for(fake.rpc_host)
            try:
                with pytest.raises(RpcUnavailable, match="Content-Length") as info:
                    await DownloaderRpc(client).fetchqueue()
            finally:
                await client.aclose()
            assert isinstance(info.value, RetryableError)


async def test_dlfetch_and_dlfails() -> None:
    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake:
            queue = GalleryQueue.attach(fake)
            queue.add(FakeGallery.build(7, "Seven", [10, 20]))
            client = client_for(fake.rpc_host)
            try:
                rpc = DownloaderRpc(client)
                assert await rpc.dlfetch("7;2;7002;org;1") == queue.file_url(7, 2)
                assert await rpc.dlfetch("7;9;7009;org;1") is None  # no URL: a failure
                assert await rpc.dlfails("127.0.0.1-7002-org;127.0.0.1-7001-org")
            finally:
                await client.aclose()
            assert queue.dlfails == [["127.0.0.1-7002-org", "127.0.0.1-7001-org"]]
            # Both went through /15/rpc with a verified actkey.
            assert ("dlfetch", "7;2;7002;org;1") in fake.calls


async def test_dlfails_never_raises() -> None:
    with trio.fail_after(30):
        async with open_fake_control(CREDS) as fake:
            host = fake.rpc_host
        client = client_for(host)
        try:
            assert await DownloaderRpc(client).dlfails("h-1-org") is False
        finally:
            await client.aclose()
