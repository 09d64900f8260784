"""The q4d plugin's setup, configuration checks and label decisions."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from hathd.config import Config, structure
from hathd.engine import build_engine
from hathd.engine.api import Job, JobState
from hathd.errors import ConfigError
from hathd.q4d.config import RETRY_PRESET, Q4DConfig
from hathd.q4d.labels import final_label
from hathd.q4d.plugin import Q4dPlugin, Q4DState, nope_preset
from hathd.runtime import open_runtime


def job(state: JobState, hash_: str = "ABC", kind: str = "transfer") -> Job:
    return Job(
        id="j",
        kind=kind,
        target="/x",
        domain="seed",
        state=state,
        params={"hash": hash_},
        created_at=time.time(),
    )


def test_enabled_only_when_configured() -> None:
    plugin = Q4dPlugin()
    assert not plugin.enabled(Config())
    assert plugin.enabled(structure({"q4d": {"enabled": True}}))


def test_config_errors_carry_key_paths() -> None:
    with pytest.raises(ConfigError) as info:
        structure({"q4d": {"host": "http://x", "segments": 0}, "mqtt": {"port": 0}})
    paths = {path for path, _msg in info.value.problems}
    assert paths == {"q4d.host", "q4d.segments", "mqtt.port"}


def test_lane_is_host_and_port() -> None:
    assert Q4DConfig(host="sftp://u@seed.example:2222/home").lane() == "seed.example:2222"
    assert Q4DConfig(host="ftp://seed.example").lane() == "seed.example"


def test_final_labels() -> None:
    cfg = Q4DConfig()
    assert final_label(cfg, job(JobState.DONE)) == ("ABC", "DONE")
    assert final_label(cfg, job(JobState.FAILED)) == ("ABC", "NOPE")
    assert final_label(cfg, job(JobState.CANCELLED)) is None
    assert final_label(cfg, job(JobState.DONE, "NotUsed")) is None
    assert final_label(cfg, job(JobState.DONE, kind="download")) is None
    assert final_label(Q4DConfig(labelling=False), job(JobState.DONE)) is None
    custom = Q4DConfig(label_done="ok", label_nope="ko")
    assert final_label(custom, job(JobState.FAILED)) == ("ABC", "ko")


async def test_setup_registers_transfer_and_reads_rules(tmp_path: Path) -> None:
    rules_file = tmp_path / "Types.config"
    rules_file.write_text("KEY CONTAINS 2024 N M\n")
    config = structure(
        {"q4d": {"enabled": True, "rules_file": str(rules_file), "rules": ["KEY IS x* X"]}}
    )
    async with open_runtime(config, tmp_path / "state") as rt:
        engine = await build_engine(rt)
        plugin = Q4dPlugin()
        await plugin.setup(rt)
        assert "transfer" in engine.kinds()
        state = plugin.state
        assert isinstance(state, Q4DState)
        assert [r.code for r in state.rules] == ["N", "X"]
        assert state.download_root == rt.paths.downloads / "q4d"
        (spec,) = plugin.services(rt)
        assert spec.name == "q4d-mqtt"
        assert spec.statistics is not None
        assert spec.statistics().received == 0


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"rules": ["KEY LIKE x Y"]}, "q4d.rules"),
        ({"rules_file": "/nonexistent/Types.config"}, "q4d.rules_file"),
        ({"type_map": {"M": "~nosuchuser-hathd/Movies"}}, "q4d.type_map.M"),
    ],
)
async def test_setup_rejects_bad_rules(
    tmp_path: Path, section: dict[str, object], key: str
) -> None:
    config = structure({"q4d": {"enabled": True, **section}})
    async with open_runtime(config, tmp_path / "state") as rt:
        await build_engine(rt)
        plugin = Q4dPlugin()
        with pytest.raises(ConfigError) as info:
            await plugin.setup(rt)
    assert info.value.problems[0][0] == key


def test_nope_preset_spends_the_retry_budget() -> None:
    """A failed transfer is retried for ``nope_after`` seconds in all, then labelled NOPE."""
    rng = random.Random(7)
    for budget in (3600.0, 600.0, 30.0, 0.0):
        preset = nope_preset(Q4DConfig(nope_after=budget).nope_after)
        waits: list[float] = []
        failures = 1
        while (delay := preset.delay_after(failures, rng)) is not None:
            waits.append(delay)
            failures += 1
        early = sum(preset.delays)
        # the early steps carry ±20 % jitter; the final try lands at the budget's end
        assert budget - 0.2 * early <= sum(waits) <= budget + 0.2 * early
        assert bool(waits) == (budget > 0)
    assert Q4DConfig().nope_after == 3600.0


async def test_transfers_use_the_nope_budget_unless_a_preset_is_named(tmp_path: Path) -> None:
    config = structure({"q4d": {"enabled": True, "nope_after": 1800}})
    async with open_runtime(config, tmp_path / "state") as rt:
        engine = await build_engine(rt)
        await Q4dPlugin().setup(rt)
        preset = engine.retry_presets()[RETRY_PRESET]
        assert preset == nope_preset(config.q4d.nope_after)
        assert preset.final_wait == 1800 - 60 - 300 - 900
        assert preset.max_attempts == 5
    assert structure({"q4d": {"retry_preset": "fanfic"}}).q4d.transfer_preset() == "fanfic"
    assert Q4DConfig().transfer_preset() == RETRY_PRESET
