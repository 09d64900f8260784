"""The ingest step on its own: Down messages → job specs → acks, with a real SQLite store.

The engine is a recording stand-in here (its own tests cover it, and the end-to-end tests use
the real one); the point is the order of effects: jobs committed, labels stored, then acks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from hathd.engine.api import Job, JobSpec, JobState, Submitted
from hathd.mqtt import Message
from hathd.q4d.config import MqttConfig, Q4DConfig
from hathd.q4d.ingest import Q4DIngest
from hathd.q4d.labels import SCHEMA, LabelOutbox
from hathd.q4d.payload import format_down
from hathd.q4d.rules import parse_rules
from hathd.store import open_store


@attrs.define
class Engine:
    """Dedupes by key like the engine; refuses targets containing ``refuse``."""

    active: dict[str, Job] = attrs.field(factory=dict)
    calls: list[str] = attrs.field(factory=list)

    def _one(self, spec: JobSpec) -> Submitted:
        if "refuse" in spec.target:
            raise ValueError("target: refused")
        key = spec.dedupe_key or spec.target
        if key in self.active:
            return Submitted(self.active[key], created=False)
        job = Job(
            id=f"j{len(self.active)}",
            kind=spec.kind,
            target=spec.target,
            domain=spec.domain,
            state=JobState.QUEUED,
            params=spec.params,
            dedupe_key=spec.dedupe_key,
            created_at=time.time(),
        )
        self.active[key] = job
        return Submitted(job, created=True)

    async def submit_many(self, specs: Sequence[JobSpec]) -> list[Submitted]:
        self.calls.append(f"submit_many:{len(specs)}")
        if any("refuse" in s.target for s in specs):
            raise ValueError("[1].target: refused")
        return [self._one(s) for s in specs]

    async def submit(self, spec: JobSpec) -> Submitted:
        self.calls.append("submit")
        return self._one(spec)


@attrs.define
class Client:
    acked: list[int] = attrs.field(factory=list)

    def ack(self, message: Message) -> bool:
        self.acked.append(message.mid)
        return True


def msg(mid: int, payload: bytes) -> Message:
    return Message("Down", payload, 1, mid, False, False, 1)


async def test_batch_commits_labels_then_acks_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        await store.migrate("q4d", SCHEMA)
        outbox = LabelOutbox(store)
        engine = Engine()
        config = Q4DConfig(
            enabled=True,
            host="sftp://seed:22",
            type_map={"M": "/media/Movies"},
            rules=["KEY CONTAINS Jeopardy J"],
        )
        ingest = Q4DIngest(
            mqtt=MqttConfig(),
            config=config,
            engine=engine,
            store=store,  # type: ignore[arg-type]
            outbox=outbox,
            rules=parse_rules("\n".join(config.rules)),
            download_root=tmp_path / "dl",
        )
        client = Client()
        batch = [
            msg(1, format_down("/f/Movie (2024)", "H1", "M")),
            msg(2, b"garbage"),
            msg(3, format_down("/f/Movie (2024)", "H1", "M")),  # same hash in the same batch
            msg(4, format_down("/f/Jeopardy S40", "NotUsed", "T")),
            msg(5, format_down("/f/refuse me", "H5", "M")),
            msg(6, format_down("/f/Other", "H6", "Q")),
        ]
        await ingest.process(client, batch)  # type: ignore[arg-type]
        assert client.acked == [1, 2, 3, 4, 5, 6]
        stats = ingest.statistics()
        assert (stats.received, stats.queued, stats.duplicates) == (6, 3, 1)
        assert stats.rejected == {"too_few_fields": 1, "error": 1}
        assert engine.calls == ["submit_many:4", "submit", "submit", "submit", "submit"]
        jobs = {job.params["hash"]: job for job in engine.active.values()}
        assert jobs["H1"].params["dest_dir"] == "/media/Movies"
        assert jobs["NotUsed"].params["code"] == "ERR"  # J from the rule, but J has no folder
        assert jobs["NotUsed"].params["dest_dir"] == str(tmp_path / "dl" / "ERR")
        assert jobs["H6"].params["code"] == "ERR"
        assert jobs["H1"].dedupe_key == "H1"
        assert jobs["NotUsed"].dedupe_key == "path:/f/Jeopardy S40"
        # QUEUED labels for new jobs with a hash only; stored before the acks went out.
        assert [(h, lb) for _i, h, lb in await outbox.pending()] == [
            ("H1", "QUEUED"),
            ("H6", "QUEUED"),
        ]
        # The reason is logged with the payload.
        (logged,) = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
        assert "too_few_fields" in logged
        assert "b'garbage'" in logged
        rows = await store.query("SELECT reason, payload FROM q4d_rejected ORDER BY id")
        assert [(r["reason"], bytes(r["payload"])) for r in rows] == [
            ("too_few_fields", b"garbage"),
        ]

        # The same hash again in a later batch: a duplicate, no second QUEUED label.
        await ingest.process(client, [msg(7, format_down("/f/Movie (2024)", "H1", "M"))])  # type: ignore[arg-type]
        assert ingest.statistics().duplicates == 2
        assert len(await outbox.pending()) == 2


async def test_no_queued_label_when_labelling_or_label_queued_is_off(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db.sqlite3") as store:
        await store.migrate("q4d", SCHEMA)
        outbox = LabelOutbox(store)
        for number, config in enumerate(
            [
                Q4DConfig(enabled=True, host="ftp://seed", labelling=False),
                Q4DConfig(enabled=True, host="ftp://seed", label_queued=False),
                Q4DConfig(enabled=True, host="ftp://seed", label_queued_text="ACCEPTED"),
            ]
        ):
            ingest = Q4DIngest(
                mqtt=MqttConfig(),
                config=config,
                engine=Engine(),
                store=store,  # type: ignore[arg-type]
                outbox=outbox,
                rules=[],
                download_root=tmp_path,
            )
            client = Client()
            await ingest.process(client, [msg(1, format_down(f"/f/x{number}", f"H{number}", "M"))])  # type: ignore[arg-type]
            assert client.acked == [1]
            assert ingest.statistics().queued == 1
        # Only the third configuration labels, with its own text.
        assert [(h, lb) for _i, h, lb in await outbox.pending()] == [("H2", "ACCEPTED")]
