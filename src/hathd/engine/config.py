"""Configuration of the job engine (``[engine]``).

Every key has a default, so ``hathd run`` works with no file::

    [engine]
    workers = 4                 # jobs running at once, in total
    job_timeout = 21600.0       # seconds one try may take (a job's own timeout wins)
    retry_preset = "default"    # preset of kinds that name none
    download_root = ""          # "" = <state_dir>/download

    [engine.global_lane]        # all domains together
    rate = 0.0                  # jobs/s, 0 = unlimited
    burst = 1

    [engine.lanes."*.example.org"]   # per domain matching the pattern
    concurrency = 2
    rate = 0.5
    burst = 3

    [engine.retry.default]      # override or add a backoff preset
    delays = [60, 300, 900]     # seconds after failure 1, 2, 3
    jitter = 0.2                # ± fraction
    final_wait = 21600.0        # seconds before one final try; omit for none
"""

from __future__ import annotations

import attrs

from hathd.confutil import FieldError, in_range


@attrs.frozen
class LaneConfig:
    """Politeness of one domain pattern: concurrent jobs, token-bucket rate (jobs/s) and burst."""

    concurrency: int = attrs.field(default=1, validator=in_range(1, 1000))
    rate: float = attrs.field(default=0.0, validator=in_range(0))
    burst: int = attrs.field(default=1, validator=in_range(1))


@attrs.frozen
class GlobalLaneConfig:
    """The lane every job belongs to: a token bucket over all domains (jobs/s, 0 = none)."""

    rate: float = attrs.field(default=0.0, validator=in_range(0))
    burst: int = attrs.field(default=1, validator=in_range(1))


def _check_delays(_inst: object, attr: attrs.Attribute[list[float]], value: list[float]) -> None:
    for delay in value:
        if delay < 0:
            raise FieldError(attr.name, f"delays must be >= 0 seconds, got {delay!r}")


@attrs.frozen
class RetryPresetConfig:
    """A backoff preset: waits after each failure (seconds), jitter (± fraction), final wait
    (seconds before one last try; ``None``: none)."""

    delays: list[float] = attrs.field(factory=lambda: [60.0, 300.0, 900.0], validator=_check_delays)
    jitter: float = attrs.field(default=0.2, validator=in_range(0, 1))
    final_wait: float | None = attrs.field(default=6 * 3600.0, validator=in_range(0))


@attrs.frozen
class EngineConfig:
    """``[engine]``: worker pool, timeouts, retry presets, lanes by domain pattern."""

    workers: int = attrs.field(default=4, validator=in_range(1, 1024))
    job_timeout: float = attrs.field(default=6 * 3600.0, validator=in_range(0.01))
    lanes: dict[str, LaneConfig] = attrs.field(factory=dict)
    global_lane: GlobalLaneConfig = attrs.field(factory=GlobalLaneConfig)
    retry: dict[str, RetryPresetConfig] = attrs.field(factory=dict)
    retry_preset: str = "default"
    download_root: str = ""
