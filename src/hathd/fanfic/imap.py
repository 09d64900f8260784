"""The IMAP watcher: story-alert mails in, ``fanfic`` jobs out.

One task owns one :class:`imapclient.IMAPClient` connection; every blocking call on it runs in
a worker thread (``trio.to_thread.run_sync``), one at a time, never concurrently
(IMAPClient documentation: an ``IMAPClient`` is not thread-safe). The loop:

1. connect (implicit TLS, STARTTLS or plain; TCP connect, implicit-TLS handshake and greeting
   within ``connect_timeout`` seconds, every later read (a STARTTLS handshake too) within
   ``timeout``), LOGIN, SELECT the mailbox;
2. scan: ``UID SEARCH UNSEEN``; for each message not handled yet, fetch at most
   ``max_message_bytes`` of it with ``BODY.PEEK[]<0.N>`` (PEEK leaves ``\\Seen`` alone),
   extract story URLs from its text and HTML parts (:mod:`hathd.fanfic.stories`), submit them
   as jobs (durable), record the message as handled, and only then ``UID STORE +FLAGS
   (\\Seen)``. Messages without story URLs are recorded but left unseen and unflagged. A
   message whose extraction raised is neither recorded nor flagged: it is fetched again on
   the next scans, up to :data:`EXTRACT_TRIES` times per watcher run (counted in
   ``extract_errors``), then left alone, unseen, until the daemon restarts;
3. wait: IDLE (RFC 2177) when the server offers it and ``idle`` is on, checking every
   ``idle_check`` seconds and renewing after ``idle_renew`` seconds; otherwise sleep
   ``poll_interval`` seconds and NOOP;
4. on any IMAP or socket error: log, wait (``reconnect_min`` doubling to ``reconnect_max``
   seconds), reconnect.

State in the store (component ``fanfic``): the mailbox's UIDVALIDITY and the last UID handled
(``fanfic_imap_cursor``), and the unseen messages already handled (``fanfic_imap_handled``,
pruned to what is still unseen). A changed UIDVALIDITY (RFC 3501 §2.3.1.1) forgets the old
UIDs. A crash between submitting and flagging re-flags the message on the next scan without
submitting it again.

Cancellation returns within a few seconds whatever the server does: a call in progress gets
:data:`CLOSE_GRACE` seconds to finish on its own (an ``idle_check`` or a reply already on its
way), then the socket is shut down from the Trio side, which makes the worker thread's read
fail at once; IDLE DONE and LOGOUT are then sent shielded, each bounded the same way. A
connection attempt in progress is abandoned at once: its socket, once there is one, is shut
down, and its thread (still waiting at most ``connect_timeout`` for a greeting) closes
whatever it connected. The service reports ``started`` before its
first connection attempt, so an unreachable or silent server never holds the daemon's
start-up back.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import trio
from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientError

from hathd.fanfic.config import ImapConfig
from hathd.fanfic.mail import extract_text
from hathd.fanfic.stories import Story, stories_in_mail
from hathd.fanfic.submit import StorySubmitter
from hathd.store import Store
from hathd.supervisor import describe_error

log = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    """
    CREATE TABLE fanfic_imap_cursor (
        account TEXT PRIMARY KEY,
        uidvalidity INTEGER NOT NULL,
        last_uid INTEGER NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE fanfic_imap_handled (
        account TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        stories INTEGER NOT NULL,
        handled_at REAL NOT NULL,
        PRIMARY KEY (account, uidvalidity, uid)
    );
    """
]
"""Schema steps of the ``fanfic`` store component."""

CLOSE_GRACE = 2.0
"""Seconds a call in progress may take after cancellation before its socket is shut down;
also the bound of IDLE DONE and LOGOUT when the watcher stops."""

KILL_WAIT = 1.0
"""Seconds to wait for a worker thread to leave after its socket was shut down."""

EXTRACT_TRIES = 3
"""Scans that try a message whose story extraction raises, per watcher run."""

_ERRORS = (IMAPClientError, OSError, EOFError)


# -- sans-IO decisions ------------------------------------------------------------------------


@attrs.frozen
class Cursor:
    """Where the watcher is in a mailbox: its UIDVALIDITY and the last UID handled."""

    uidvalidity: int
    last_uid: int = 0


def after_select(stored: Cursor | None, uidvalidity: int) -> Cursor:
    """The cursor to use after SELECT reported ``uidvalidity``; a new UIDVALIDITY (or none
    stored) starts from UID 0."""
    if stored is None or stored.uidvalidity != uidvalidity:
        return Cursor(uidvalidity, 0)
    return stored


@attrs.frozen
class ScanPlan:
    """What to do with the UNSEEN messages: fetch these, re-flag those (already submitted)."""

    fetch: tuple[int, ...]
    reflag: tuple[int, ...]


def plan_scan(unseen: Iterable[int], handled: dict[int, int]) -> ScanPlan:
    """Split UNSEEN UIDs: never handled → fetch; handled with stories → flag ``\\Seen`` again;
    handled without stories → leave alone. ``handled`` maps UID → number of stories."""
    fetch: list[int] = []
    reflag: list[int] = []
    for uid in sorted(set(unseen)):
        if uid not in handled:
            fetch.append(uid)
        elif handled[uid] > 0:
            reflag.append(uid)
    return ScanPlan(tuple(fetch), tuple(reflag))


def idle_has_news(responses: Sequence[Any]) -> bool:
    """Whether untagged IDLE responses announce a change worth a scan (EXISTS, RECENT,
    FETCH, EXPUNGE; RFC 3501 §7.3–7.4)."""
    for item in responses:
        if isinstance(item, tuple) and len(item) >= 2:
            word = item[1]
            if isinstance(word, bytes) and word.upper() in (
                b"EXISTS",
                b"RECENT",
                b"FETCH",
                b"EXPUNGE",
            ):
                return True
    return False


def body_of(fetched: dict[bytes, Any]) -> bytes:
    """The message bytes in one FETCH response (``BODY[]<0>`` for a partial fetch)."""
    for key, value in fetched.items():
        if isinstance(key, bytes) and key.startswith(b"BODY[]") and isinstance(value, bytes):
            return value
    return b""


# -- store ------------------------------------------------------------------------------------


class MailboxStore:
    """The watcher's rows in the store for one ``account`` (``user@host:port/mailbox``)."""

    def __init__(self, store: Store, account: str) -> None:
        self.store = store
        self.account = account

    async def cursor(self) -> Cursor | None:
        """The stored cursor, or ``None``."""
        rows = await self.store.query(
            "SELECT uidvalidity, last_uid FROM fanfic_imap_cursor WHERE account = ?",
            (self.account,),
        )
        return Cursor(int(rows[0][0]), int(rows[0][1])) if rows else None

    async def reset(self, cursor: Cursor) -> None:
        """Store ``cursor`` and forget handled UIDs of any other UIDVALIDITY."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM fanfic_imap_handled WHERE account = ? AND uidvalidity != ?",
                (self.account, cursor.uidvalidity),
            )
            self._put_cursor(conn, cursor)

        await self.store.write(run)

    def _put_cursor(self, conn: sqlite3.Connection, cursor: Cursor) -> None:
        conn.execute(
            "INSERT INTO fanfic_imap_cursor(account, uidvalidity, last_uid, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(account) DO UPDATE SET "
            "uidvalidity = excluded.uidvalidity, "
            "last_uid = max(CASE WHEN fanfic_imap_cursor.uidvalidity = excluded.uidvalidity "
            "THEN fanfic_imap_cursor.last_uid ELSE 0 END, excluded.last_uid), "
            "updated_at = excluded.updated_at",
            (self.account, cursor.uidvalidity, cursor.last_uid, time.time()),
        )

    async def handled(self, uidvalidity: int) -> dict[int, int]:
        """UID → number of stories, for the messages already handled."""
        rows = await self.store.query(
            "SELECT uid, stories FROM fanfic_imap_handled WHERE account = ? AND uidvalidity = ?",
            (self.account, uidvalidity),
        )
        return {int(r[0]): int(r[1]) for r in rows}

    async def mark_handled(self, uidvalidity: int, uid: int, stories: int) -> None:
        """Record message ``uid`` as handled and advance the cursor (one transaction)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO fanfic_imap_handled"
                "(account, uidvalidity, uid, stories, handled_at) VALUES (?, ?, ?, ?, ?)",
                (self.account, uidvalidity, uid, stories, time.time()),
            )
            self._put_cursor(conn, Cursor(uidvalidity, uid))

        await self.store.write(run)

    async def prune(self, uidvalidity: int, unseen: Iterable[int]) -> None:
        """Forget handled messages that are no longer unseen (flagged or expunged)."""
        keep = frozenset(unseen)

        def run(conn: sqlite3.Connection) -> None:
            rows = conn.execute(
                "SELECT uid FROM fanfic_imap_handled WHERE account = ? AND uidvalidity = ?",
                (self.account, uidvalidity),
            ).fetchall()
            gone = [int(r[0]) for r in rows if int(r[0]) not in keep]
            conn.executemany(
                "DELETE FROM fanfic_imap_handled WHERE account = ? AND uidvalidity = ? AND uid = ?",
                [(self.account, uidvalidity, uid) for uid in gone],
            )

        await self.store.write(run)


# -- the Trio shell ---------------------------------------------------------------------------


@attrs.define
class WatcherStatistics:
    """Counters of the watcher; ``connected`` and ``idle`` describe the current session;
    ``messages`` counts messages handled (recorded), ``scanned_messages`` is ``messages`` as
    of the end of the last completed scan; ``extract_errors`` counts story extractions that
    raised (the message is then left unrecorded, to be tried again)."""

    connected: bool = False
    idle: bool = False
    connects: int = 0
    errors: int = 0
    scans: int = 0
    messages: int = 0
    scanned_messages: int = 0
    messages_with_stories: int = 0
    extract_errors: int = 0
    stories: int = 0
    jobs_created: int = 0
    last_uid: int = 0
    last_error: str | None = None


def _ssl_context(cfg: ImapConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
    if not cfg.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def account_name(cfg: ImapConfig) -> str:
    """The store key of a mailbox: ``user@host:port/mailbox``."""
    return f"{cfg.username}@{cfg.host}:{cfg.effective_port()}/{cfg.mailbox}"


@attrs.frozen
class _Session:
    client: IMAPClient
    uidvalidity: int
    can_idle: bool


class ImapWatcher:
    """Watches one mailbox and submits the stories it finds (see module docstring)."""

    def __init__(
        self,
        config: ImapConfig,
        store: Store,
        submitter: StorySubmitter,
        *,
        extract: Callable[[bytes], list[Story]] | None = None,
    ) -> None:
        self.config = config
        self.submitter = submitter
        self.mailbox = MailboxStore(store, account_name(config))
        self.stats = WatcherStatistics()
        self._extract = extract or (lambda raw: stories_in_mail(extract_text(raw)))
        self._scan_done = trio.Event()
        self._extract_failures: dict[tuple[int, int], int] = {}

    def statistics(self) -> WatcherStatistics:
        """A copy of the counters."""
        return attrs.evolve(self.stats)

    async def wait_scans(self, count: int) -> None:
        """Return once ``count`` scans of the mailbox have completed (since start)."""
        while self.stats.scans < count:
            await self._scan_done.wait()

    async def wait_handled(self, count: int) -> None:
        """Return once a completed scan had handled ``count`` messages in total, i.e. those
        messages are fetched, their jobs committed and their flags set."""
        while self.stats.scanned_messages < count:
            await self._scan_done.wait()

    # -- blocking parts (worker thread) ---------------------------------------------------

    def _connect_blocking(self, password: str, pending: _Pending) -> _Session:
        cfg = self.config
        port = cfg.effective_port()
        timeout = SocketTimeout(connect=cfg.connect_timeout, read=cfg.timeout)
        if cfg.tls == "tls":
            client = IMAPClient(
                cfg.host, port, ssl=True, ssl_context=_ssl_context(cfg), timeout=timeout
            )
        else:
            client = IMAPClient(cfg.host, port, ssl=False, timeout=timeout)
        try:
            pending.attach(client)
            if cfg.tls == "starttls":
                client.starttls(_ssl_context(cfg))
            client.login(cfg.username, password)
            info = client.select_folder(cfg.mailbox)
            uidvalidity = int(info[b"UIDVALIDITY"])
            can_idle = bool(client.has_capability("IDLE"))
            pending.detach()
        except BaseException:
            _shutdown_quietly(client)
            raise
        return _Session(client, uidvalidity, can_idle)

    async def _connect(self, password: str) -> _Session:
        """Connect, log in and select (in a worker thread). Cancellation returns at once: the
        thread is abandoned and the socket, once there is one, shut down.

        :raises IMAPClientError | OSError | EOFError: the server refused or did not answer.
        """
        pending = _Pending()
        try:
            return await trio.to_thread.run_sync(
                self._connect_blocking, password, pending, abandon_on_cancel=True
            )
        except trio.Cancelled:
            client = pending.abandon()
            if client is not None:
                _kill(client)
                if pending.ready:
                    # the session was ready but never reached us: nobody else will close it
                    _shutdown_quietly(client)
            raise

    # -- async loop -----------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ``started`` once the password is read, before the first
        connection attempt, so an unreachable or silent server never holds the daemon's
        start-up back. Cancellation returns within a few seconds (module docstring).

        :raises ConfigError: the password file cannot be read (before ``started``).
        """
        cfg = self.config
        password = cfg.read_password()
        backoff = cfg.reconnect_min
        task_status.started()
        while True:
            session: _Session | None = None
            try:
                session = await self._connect(password)
                self.stats.connects += 1
                self.stats.connected = True
                self.stats.last_error = None
                log.info("IMAP %s connected", account_name(cfg))
                backoff = cfg.reconnect_min
                await self._run_session(session)
            except _ERRORS as exc:
                self.stats.errors += 1
                self.stats.last_error = describe_error(exc)
                log.warning(
                    "IMAP %s: %s; reconnecting in %.1f s",
                    account_name(cfg),
                    self.stats.last_error,
                    backoff,
                )
            finally:
                self.stats.connected = False
                self.stats.idle = False
                if session is not None:
                    await _close(session.client)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, cfg.reconnect_max)

    async def _run_session(self, session: _Session) -> None:
        cursor = after_select(await self.mailbox.cursor(), session.uidvalidity)
        await self.mailbox.reset(cursor)
        while True:
            await self._scan(session)
            if session.can_idle and self.config.idle:
                await self._idle_wait(session.client)
            else:
                await trio.sleep(self.config.poll_interval)
                await _call(session.client, session.client.noop)

    async def _scan(self, session: _Session) -> None:
        client = session.client
        unseen = [int(u) for u in await _call(client, client.search, ["UNSEEN"])]
        handled = await self.mailbox.handled(session.uidvalidity)
        plan = plan_scan(unseen, handled)
        if plan.reflag:
            await _call(client, client.add_flags, list(plan.reflag), [b"\\Seen"])
        for uid in plan.fetch:
            if self._extract_failures.get((session.uidvalidity, uid), 0) >= EXTRACT_TRIES:
                continue
            await self._handle_message(session, uid)
        await self.mailbox.prune(session.uidvalidity, unseen)
        self.stats.scans += 1
        self.stats.scanned_messages = self.stats.messages
        self._scan_done.set()
        self._scan_done = trio.Event()

    async def _handle_message(self, session: _Session, uid: int) -> None:
        client = session.client
        limit = self.config.max_message_bytes
        fetched = await _call(client, client.fetch, [uid], [f"BODY.PEEK[]<0.{limit}>"])
        raw = body_of(fetched.get(uid, {}))
        stories = await trio.to_thread.run_sync(self._safe_extract, raw, abandon_on_cancel=True)
        if stories is None:
            key = (session.uidvalidity, uid)
            failures = self._extract_failures[key] = self._extract_failures.get(key, 0) + 1
            self.stats.extract_errors += 1
            if failures < EXTRACT_TRIES:
                log.warning(
                    "IMAP UID %d: story extraction failed (%d of %d tries); left unseen, "
                    "trying again on the next scan",
                    uid,
                    failures,
                    EXTRACT_TRIES,
                )
            else:
                log.error(
                    "IMAP UID %d: story extraction failed %d times; left unseen and not "
                    "tried again until hathd restarts",
                    uid,
                    failures,
                )
            return
        self._extract_failures.pop((session.uidvalidity, uid), None)
        self.stats.messages += 1
        if stories:
            report = await self.submitter.submit(
                stories, source="imap", source_id=f"{session.uidvalidity}:{uid}"
            )
            self.stats.messages_with_stories += 1
            self.stats.stories += len(stories)
            self.stats.jobs_created += len(report.created)
            log.info(
                "IMAP UID %d: %d stories (%d new jobs, %d already queued, %d disabled)",
                uid,
                len(stories),
                len(report.created),
                len(report.existing),
                len(report.disabled),
            )
        await self.mailbox.mark_handled(session.uidvalidity, uid, len(stories))
        self.stats.last_uid = max(self.stats.last_uid, uid)
        if stories:
            await _call(client, client.add_flags, [uid], [b"\\Seen"])

    def _safe_extract(self, raw: bytes) -> list[Story] | None:
        """The message's stories, or ``None`` (logged with its traceback) when extraction
        raised."""
        try:
            return self._extract(raw)
        except Exception:
            log.exception("story extraction failed on a message")
            return None

    async def _idle_wait(self, client: IMAPClient) -> None:
        cfg = self.config
        await _call(client, client.idle)
        self.stats.idle = True
        try:
            deadline = trio.current_time() + cfg.idle_renew
            while trio.current_time() < deadline:
                responses = await _call(client, client.idle_check, cfg.idle_check)
                if idle_has_news(responses):
                    break
        finally:
            self.stats.idle = False
            await _end_idle(client)


async def _end_idle(client: IMAPClient) -> None:
    """Send IDLE DONE (shielded, at most :data:`CLOSE_GRACE` seconds; past that the socket is
    shut down).

    :raises OSError: DONE got no answer in time (the connection is then unusable).
    """
    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE) as scope:
        try:
            await _call(client, client.idle_done, grace=0.0)
        except _ERRORS as exc:
            log.debug("IDLE DONE failed: %s", exc)
    if scope.cancelled_caught:
        raise OSError("IMAP server did not answer IDLE DONE")


@attrs.define
class _Pending:
    """A connection being set up in a worker thread, and whether the Trio side gave up on it
    (cancellation). The lock makes "attach after abandon" and "abandon after attach" both
    end with the socket shut down."""

    lock: threading.Lock = attrs.field(factory=threading.Lock)
    client: IMAPClient | None = None
    abandoned: bool = False
    ready: bool = False
    """The worker finished the set-up: from then on only the Trio side may close the client."""

    def attach(self, client: IMAPClient) -> None:
        """(Worker thread) the client is connected; raise if nobody wants it any more.

        :raises OSError: the attempt was abandoned.
        """
        with self.lock:
            if self.abandoned:
                raise OSError("IMAP connection attempt abandoned")
            self.client = client

    def detach(self) -> None:
        """(Worker thread) the session is ready and handed over; raise if nobody wants it
        any more (the worker then closes it itself).

        :raises OSError: the attempt was abandoned.
        """
        with self.lock:
            if self.abandoned:
                raise OSError("IMAP connection attempt abandoned")
            self.ready = True

    def abandon(self) -> IMAPClient | None:
        """(Trio side) give up; returns the client whose socket must be shut down, if any."""
        with self.lock:
            self.abandoned = True
            return self.client


def _kill(client: IMAPClient) -> None:
    """Shut the connection's socket down both ways, from any thread: a worker thread blocked
    reading or writing it fails at once. The socket itself is closed later by
    :func:`_shutdown_quietly` (or LOGOUT)."""
    try:
        sock = client.socket()
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, AttributeError, ValueError):
        pass


async def _wait_thread(finished: threading.Event, timeout: float) -> bool:
    if finished.is_set():
        return True
    return await trio.to_thread.run_sync(finished.wait, timeout)


async def _call[T](
    client: IMAPClient, fn: Callable[..., T], *args: Any, grace: float = CLOSE_GRACE
) -> T:
    """``fn(*args)`` (a blocking call on ``client``) in a worker thread.

    On cancellation the call gets ``grace`` seconds (shielded) to finish on its own; then
    the client's socket is shut down (:func:`_kill`), which ends the call at once, and
    Cancelled propagates. Either way the thread has left (or, should shutting the socket
    not wake it, been given up after :data:`KILL_WAIT` seconds) before this returns, so the
    next call on ``client`` never overlaps it.

    :raises IMAPClientError | OSError | EOFError: what ``fn`` raised.
    """
    finished = threading.Event()

    def run() -> T:
        try:
            return fn(*args)
        finally:
            finished.set()

    try:
        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            if not await _wait_thread(finished, grace):
                _kill(client)
                if not await _wait_thread(finished, KILL_WAIT):
                    log.warning("an IMAP worker thread did not stop after its socket closed")
        raise


def _shutdown_quietly(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:
        pass


def _logout_blocking(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        _shutdown_quietly(client)


async def _close(client: IMAPClient) -> None:
    """LOGOUT (shielded, at most :data:`CLOSE_GRACE` seconds), then the socket is closed."""
    with trio.CancelScope(shield=True):
        with trio.move_on_after(CLOSE_GRACE):
            await _call(client, _logout_blocking, client, grace=0.0)
        _shutdown_quietly(client)
