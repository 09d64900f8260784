"""The q4d subsystem as a daemon plugin: seedbox transfers (Queue4Download).

- ``enabled``: ``[q4d] enabled = true``.
- ``setup``: the ``q4d`` migrations (label outbox, rejected payloads), the type rules (from
  ``rules_file`` then ``rules``), the ``transfer`` handler with its ``on_final`` label hook, and
  the seedbox lane (``concurrency`` transfers at once).
- ``services``: ``q4d-mqtt``, the ingest service (ready once connected and subscribed).
- ``blueprint``: ``GET /api/v1/q4d/status`` (counters) and ``GET /api/v1/q4d/rejected`` (the
  last rejected payloads).
- ``cli``: ``hathd q4d import`` (convert a Queue4Download setup into TOML), ``hathd q4d status``,
  ``hathd q4d rejected``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from hathd.config import Config
from hathd.engine.retry import DEFAULT_PRESET, RetryPreset
from hathd.errors import ConfigError
from hathd.runtime import BasePlugin, Runtime
from hathd.supervisor import ServiceSpec

if TYPE_CHECKING:
    import asyncclick as click
    from quart import Blueprint

from hathd.engine.api import Job, JobSpec
from hathd.programs import resolve
from hathd.q4d.config import RETRY_PRESET
from hathd.q4d.ingest import Q4DIngest
from hathd.q4d.labels import SCHEMA, LabelOutbox, final_label
from hathd.q4d.rules import Rule, RulesError, destination, load_rules
from hathd.q4d.transfer import TransferHandler, check_params, destination_roots

log = logging.getLogger(__name__)

SERVICE = "q4d-mqtt"
LFTP_FIX = "install lftp (Debian package: lftp), or set [q4d] lftp to its full path"


@attrs.define
class Q4DState:
    """What the plugin keeps once set up (:attr:`Q4dPlugin.state`): the label outbox, the parsed
    rules, the resolved download root, the ``transfer`` handler and the current ingest service
    (``None`` until :meth:`Q4dPlugin.services` made one)."""

    outbox: LabelOutbox
    rules: list[Rule]
    download_root: Path
    handler: TransferHandler
    ingest: Q4DIngest | None = None


async def load_configured_rules(config: Config) -> list[Rule]:
    """The rules of ``q4d.rules_file`` followed by ``q4d.rules``.

    :raises ConfigError: the file cannot be read or a rule is invalid.
    """
    cfg = config.q4d
    text: str | None = None
    if cfg.rules_file:
        path = trio.Path(cfg.rules_file)
        try:
            text = await (await path.expanduser()).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([("q4d.rules_file", f"cannot read {path}: {exc}")]) from None
    try:
        return load_rules(cfg.rules, text, source=str(cfg.rules_file))
    except RulesError as exc:
        key = "q4d.rules" if exc.source == "q4d.rules" else "q4d.rules_file"
        raise ConfigError([(key, str(exc))]) from None


def download_root(rt: Runtime) -> Path:
    """``q4d.download_root`` (``~`` expanded), else ``<state_dir>/download/q4d``; the base of
    relative ``type_map`` folders."""
    configured = rt.config.q4d.download_root
    return Path(configured).expanduser() if configured else rt.paths.downloads / "q4d"


def nope_preset(budget: float) -> RetryPreset:
    """The backoff of transfers from ``[q4d] nope_after`` (``budget``, seconds): the
    ``default`` preset's waits while their sum (jitter aside) stays within the budget, then a
    final try at the budget's end, after which the transfer is labelled NOPE."""
    delays: list[float] = []
    for step in DEFAULT_PRESET.delays:
        if sum(delays) + step > budget:
            break
        delays.append(step)
    rest = budget - sum(delays)
    final = rest if rest > 0 else None
    return RetryPreset(delays=tuple(delays), jitter=DEFAULT_PRESET.jitter, final_wait=final)


class Q4dPlugin(BasePlugin):
    """Wires the q4d subsystem into the daemon."""

    name = "q4d"

    def __init__(self) -> None:
        self.state: Q4DState | None = None

    def enabled(self, config: Config) -> bool:
        """``[q4d] enabled = true``."""
        return config.q4d.enabled

    async def setup(self, rt: Runtime) -> None:
        """Migrations, rules, the ``transfer`` handler, its label hook and the seedbox lane.

        :raises ConfigError: no engine, or invalid rules.
        """
        if rt.engine is None:
            raise ConfigError([("q4d.enabled", "the job engine is not set up")])
        cfg = rt.config.q4d
        await rt.store.migrate("q4d", SCHEMA)
        rules = await load_configured_rules(rt.config)
        root = download_root(rt)
        for code in [*cfg.type_map, "ERR"]:
            try:
                destination(code, cfg.type_map, root)
            except (RuntimeError, ValueError) as exc:
                raise ConfigError([(f"q4d.type_map.{code}", str(exc))]) from None
        lftp = rt.programs.add(resolve("lftp", [cfg.lftp], fix=LFTP_FIX, needed_by="transfer"))
        if lftp.argv is not None:
            cfg = attrs.evolve(cfg, lftp=lftp.argv[0])
        outbox = LabelOutbox(rt.store)
        roots = destination_roots(cfg.type_map, root)
        handler = TransferHandler(cfg, roots=roots, program=lftp)
        state = Q4DState(outbox, rules, root, handler)
        self.state = state

        async def on_final(job: Job) -> None:
            label = final_label(cfg, job)
            if label is not None:
                await outbox.put([label])

        def validate(spec: JobSpec) -> None:
            # every surface (MQTT, admin API, CLI) submits through the engine, which calls this
            check_params(spec.params, roots)

        rt.engine.add_retry_preset(RETRY_PRESET, nope_preset(cfg.nope_after))
        rt.engine.register(
            "transfer",
            handler,
            retry_preset=cfg.transfer_preset(),
            on_final=on_final,
            validate=validate,
        )
        rt.engine.add_lane(cfg.lane(), concurrency=cfg.concurrency)
        log.info("q4d: %d type rule(s), transfers from %s", len(rules), cfg.host or "(unset)")

    def _state(self, rt: Runtime) -> Q4DState:
        state = self.state
        if state is None:
            raise RuntimeError("q4d plugin used before setup()")
        return state

    def make_ingest(self, rt: Runtime) -> Q4DIngest:
        """A new ingest service instance on ``rt`` (one per supervised run)."""
        state = self._state(rt)
        assert rt.engine is not None
        ingest = Q4DIngest(
            mqtt=rt.config.mqtt,
            config=rt.config.q4d,
            engine=rt.engine,
            store=rt.store,
            outbox=state.outbox,
            rules=state.rules,
            download_root=state.download_root,
        )
        state.ingest = ingest
        return ingest

    def services(self, rt: Runtime) -> Sequence[ServiceSpec]:
        """``q4d-mqtt``: the ``Down`` subscriber and ``Label`` publisher."""
        ingest = self.make_ingest(rt)
        return [ServiceSpec(SERVICE, ingest.serve, ingest.statistics)]

    def blueprint(self, rt: Runtime) -> Blueprint | None:
        """``GET /api/v1/q4d/status`` and ``GET /api/v1/q4d/rejected`` (see
        :mod:`hathd.q4d.api`)."""
        from hathd.q4d.api import make_blueprint

        return make_blueprint(rt, self._state(rt))

    def cli(self) -> Sequence[click.Command]:
        """``hathd q4d import|status|rejected`` (see :mod:`hathd.q4d.cli`)."""
        from hathd.q4d.cli import q4d_group

        return [q4d_group]
