"""The Queue4Download ingest service: ``Down`` events → durable ``transfer`` jobs, labels out.

One MQTT session (:class:`hathd.mqtt.MqttClient`, fixed client id, persistent session, QoS 1
subscription to ``Down``) feeds three tasks:

- the consumer takes the messages that are waiting (up to :data:`BATCH` at a time), parses each
  payload (:func:`hathd.q4d.payload.parse_down`), applies the type rules, submits all jobs in
  one transaction (``EngineAPI.submit_many``; ``dedupe_key`` = the hash, so a hash already
  queued or running is not queued twice), stores ``QUEUED`` labels in the outbox and only then
  acknowledges the messages, in the order they arrived. A rejected payload is logged with its
  reason, counted, kept in ``q4d_rejected`` (the last :data:`KEEP_REJECTED`) and acknowledged.
- the labeller publishes the outbox (:mod:`hathd.q4d.labels`) while connected.
- the MQTT client's own reader, writer and keep-alive tasks.

The service reports ready once the broker accepted the connection and the subscription.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio

from hathd.engine.api import EngineAPI, JobSpec, Submitted
from hathd.errors import HathdError
from hathd.excgroups import single
from hathd.mqtt import Message, MqttClient, MqttNotConnected, MqttStatistics
from hathd.q4d.config import MqttConfig, Q4DConfig
from hathd.q4d.labels import LabelOutbox
from hathd.q4d.payload import DownEvent, Rejected, format_label, parse_down
from hathd.q4d.rules import Rule, classify, destination, event_fields
from hathd.store import Store

log = logging.getLogger(__name__)

BATCH = 256
"""Most messages committed in one transaction."""

KEEP_REJECTED = 1000
"""Rejected payloads kept in ``q4d_rejected`` for inspection."""

ERROR_REASON = "error"
"""Counter label of an event that parsed but could not become a job (logged with a traceback)."""

JOB_TIMEOUT_MARGIN = 300.0
"""Seconds added to ``q4d.timeout`` for the engine's own limit, so lftp's timeout fires first."""


@attrs.frozen
class Q4DStatistics:
    """Counters since the service started: messages received, payloads rejected (by reason),
    jobs queued, duplicates (hash already active), labels published, MQTT session state."""

    connected: bool
    received: int
    rejected: dict[str, int]
    queued: int
    duplicates: int
    labels_sent: int
    mqtt: MqttStatistics | None


class Q4DIngest:
    """The ingest service of one daemon (one instance per supervised run).

    :param mqtt: the ``[mqtt]`` section (broker, TLS, credentials, client id, session).
    :param config: the ``[q4d]`` section (topics, QoS, labels, type map, timeouts).
    :param engine: where ``transfer`` jobs are submitted (``submit_many``, ``submit``).
    :param store: the daemon's SQLite store (``q4d_rejected``).
    :param outbox: the durable label outbox shared with the plugin's ``on_final`` hook.
    :param rules: the parsed Types.config rules, applied in order.
    :param download_root: base of relative ``type_map`` folders.
    """

    def __init__(
        self,
        *,
        mqtt: MqttConfig,
        config: Q4DConfig,
        engine: EngineAPI,
        store: Store,
        outbox: LabelOutbox,
        rules: Sequence[Rule],
        download_root: Path,
    ) -> None:
        self.mqtt_config = mqtt
        self.config = config
        self.engine = engine
        self.store = store
        self.outbox = outbox
        self.rules = list(rules)
        self.download_root = download_root
        self.client: MqttClient | None = None
        self.received = 0
        self.rejected: Counter[str] = Counter()
        self.queued = 0
        self.duplicates = 0
        self.labels_sent = 0

    def statistics(self) -> Q4DStatistics:
        """The service's counters (a snapshot)."""
        client = self.client
        return Q4DStatistics(
            connected=client.connected if client else False,
            received=self.received,
            rejected=dict(self.rejected),
            queued=self.queued,
            duplicates=self.duplicates,
            labels_sent=self.labels_sent,
            mqtt=client.statistics() if client else None,
        )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ready once connected and subscribed.

        :raises hathd.mqtt.MqttError: the first connection failed (the supervisor retries).
        """
        client = MqttClient(
            self.mqtt_config, subscriptions=[(self.config.topic_down, self.config.qos)]
        )
        self.client = client
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(client.serve)
                nursery.start_soon(self._consume, client)
                nursery.start_soon(self._publish_labels, client)
                task_status.started()
        except BaseExceptionGroup as group:
            leaf = single(group)
            if leaf is group:
                raise
            raise leaf from None

    # ---- Down events ------------------------------------------------------------------

    async def _consume(self, client: MqttClient) -> None:
        async with client.messages:
            async for first in client.messages:
                batch = [first]
                while len(batch) < BATCH:
                    try:
                        batch.append(client.messages.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self.process(client, batch)

    def spec_for(self, event: DownEvent, mid: int) -> JobSpec:
        """The ``transfer`` job of ``event``: rules → code → destination folder."""
        cfg = self.config
        code = classify(
            self.rules,
            event_fields(event.path, event.hash),
            code=event.code,
            default=cfg.default_code,
        )
        used, folder = destination(code, cfg.type_map, self.download_root)
        params = {
            "path": event.path,
            "hash": event.hash,
            "code": used,
            "payload_code": event.code,
            "dest_dir": str(folder),
        }
        return JobSpec(
            kind="transfer",
            target=event.path,
            domain=cfg.lane(),
            params=params,
            source="mqtt",
            source_id=str(mid),
            dedupe_key=event.dedupe_key,
            retry_preset=cfg.retry_preset or None,
            timeout=cfg.timeout + JOB_TIMEOUT_MARGIN,
        )

    async def process(self, client: MqttClient, batch: Sequence[Message]) -> None:
        """Store the jobs of ``batch`` durably, then acknowledge its messages in order."""
        specs: list[JobSpec] = []
        events: list[DownEvent] = []
        seen: set[str] = set()
        rejected: list[tuple[float, str, str, bytes]] = []
        for message in batch:
            self.received += 1
            parsed = parse_down(message.payload)
            if isinstance(parsed, Rejected):
                self.rejected[parsed.reason.value] += 1
                log.warning(
                    "rejected %s payload (%s): %s; payload %r",
                    message.topic,
                    parsed.reason.value,
                    parsed.detail,
                    message.payload[:120],
                )
                rejected.append((time.time(), parsed.reason.value, parsed.detail, message.payload))
                continue
            if parsed.dedupe_key in seen:
                self.duplicates += 1
                continue
            try:
                spec = self.spec_for(parsed, message.mid)
            except Exception as exc:  # a poison message must not crash-loop the service
                self.rejected[ERROR_REASON] += 1
                log.exception("cannot make a job of %r", message.payload[:120])
                rejected.append((time.time(), ERROR_REASON, repr(exc), message.payload))
                continue
            seen.add(parsed.dedupe_key)
            events.append(parsed)
            specs.append(spec)
        if rejected:
            await self._keep_rejected(rejected)
        if specs:
            results = await self._submit(specs)
            labels: list[tuple[str, str]] = []
            for event, result in zip(events, results, strict=True):
                if result is None:
                    self.rejected[ERROR_REASON] += 1
                    continue
                if not result.created:
                    self.duplicates += 1
                    log.info("%s already has job %s; not queued again", event.hash, result.job.id)
                    continue
                self.queued += 1
                log.info("queued %s (%s) as job %s", event.path, event.hash, result.job.id)
                if self.config.labelling and self.config.label_queued and event.has_hash:
                    labels.append((event.hash, self.config.label_queued_text))
            await self.outbox.put(labels)
        for message in batch:
            client.ack(message)

    async def _submit(self, specs: list[JobSpec]) -> list[Submitted | None]:
        """``submit_many`` until it succeeds (a store failure must not lose the events:
        nothing is acknowledged before the jobs are committed).

        When the engine refuses the batch (``ValueError``), each job is submitted alone and a
        refused one yields ``None`` (logged), so one bad job cannot block the others.
        """
        backoff = 0.5
        while True:
            try:
                return list(await self.engine.submit_many(specs))
            except ValueError:
                return [await self._submit_one(spec) for spec in specs]
            except HathdError as exc:
                log.error("cannot store %d transfer job(s): %s; retrying", len(specs), exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _submit_one(self, spec: JobSpec) -> Submitted | None:
        backoff = 0.5
        while True:
            try:
                return await self.engine.submit(spec)
            except ValueError as exc:
                log.error("the engine refused the transfer of %r: %s", spec.target, exc)
                return None
            except HathdError as exc:
                log.error("cannot store the transfer of %r: %s; retrying", spec.target, exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _keep_rejected(self, rows: list[tuple[float, str, str, bytes]]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO q4d_rejected (received_at, reason, detail, payload) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
            conn.execute(
                "DELETE FROM q4d_rejected WHERE id <= (SELECT MAX(id) FROM q4d_rejected) - ?",
                (KEEP_REJECTED,),
            )

        try:
            await self.store.write(write)
        except HathdError as exc:
            log.error("cannot keep %d rejected payload(s): %s", len(rows), exc)

    # ---- labels -----------------------------------------------------------------------

    async def _publish_labels(self, client: MqttClient) -> None:
        topic, qos = self.config.topic_label, self.config.label_qos
        while True:
            rows = await self.outbox.pending()
            if not rows:
                await self.outbox.wait_new()
                continue
            for label_id, hash_, label in rows:
                await client.wait_connected()
                try:
                    await client.publish(topic, format_label(hash_, label), qos=qos)
                except MqttNotConnected:
                    break
                await self.outbox.remove(label_id)
                self.labels_sent += 1
                log.info("label %s %s published", hash_, label)
