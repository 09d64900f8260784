"""Configuration of the job engine (``[engine]``).

Every key has a default, so ``hathd run`` works with no file::

    [engine]
    workers = 4                 # jobs running at once, in total
    job_timeout = 21600.0       # seconds one try may take (a job's own timeout wins)
    retry_preset = "default"    # preset of kinds that name none
    download_root = ""          # "" = <state_dir>/download
    min_free_bytes = 268435456  # below this (bytes free under download_root) the queue pauses
    disk_check_interval = 30.0  # seconds between free-space checks while there is work

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
    final_wait = 21600.0        # seconds before one final try
    final_try = true            # false = fail as soon as the delays are spent
"""

from __future__ import annotations

import attrs

from hathd.confutil import FieldError, in_range


@attrs.frozen
class LaneConfig:
    """Politeness of one domain pattern: concurrent jobs, token-bucket rate (jobs/s) and burst."""

    concurrency: int = attrs.field(default=1, validator=in_range(1, 1000))
    """Jobs at once per domain matching the pattern (fnmatch)."""
    rate: float = attrs.field(default=0.0, validator=in_range(0))
    """Token-bucket rate per domain in jobs/s; 0 = unlimited."""
    burst: int = attrs.field(default=1, validator=in_range(1))
    """Capacity of the per-domain bucket: jobs that may start back to back."""


@attrs.frozen
class GlobalLaneConfig:
    """The lane every job belongs to: a token bucket over all domains (jobs/s, 0 = none)."""

    rate: float = attrs.field(default=0.0, validator=in_range(0))
    """Jobs/s started over all domains together; 0 = unlimited."""
    burst: int = attrs.field(default=1, validator=in_range(1))
    """Capacity of the global bucket: jobs that may start back to back."""


def _check_delays(_inst: object, attr: attrs.Attribute[list[float]], value: list[float]) -> None:
    for delay in value:
        if delay < 0:
            raise FieldError(attr.name, f"delays must be >= 0 seconds, got {delay!r}")


@attrs.frozen
class RetryPresetConfig:
    """A backoff preset: waits after each failure (seconds), jitter (± fraction), and one final
    try ``final_wait`` seconds after the delays are spent (unless ``final_try`` is false)."""

    delays: list[float] = attrs.field(factory=lambda: [60.0, 300.0, 900.0], validator=_check_delays)
    """Seconds to wait after failure 1, 2, …; their count sets the number of normal retries."""
    jitter: float = attrs.field(default=0.2, validator=in_range(0, 1))
    """Random ± fraction applied to each wait (0.2 = ±20 %)."""
    final_wait: float | None = attrs.field(default=6 * 3600.0, validator=in_range(0))
    """Seconds before one final try once the delays are spent."""
    final_try: bool = True
    """Make that final try; false = the job fails as soon as the delays are spent."""

    def effective_final_wait(self) -> float | None:
        """``final_wait`` in seconds, or ``None`` when there is no final try."""
        return self.final_wait if self.final_try else None


@attrs.frozen
class EngineConfig:
    """``[engine]``: worker pool, timeouts, retry presets, lanes by domain pattern."""

    workers: int = attrs.field(default=4, validator=in_range(1, 1024))
    """Jobs running at once, in total."""
    job_timeout: float = attrs.field(default=6 * 3600.0, validator=in_range(0.01))
    """Seconds one try of a job may take (a job's own ``timeout`` wins)."""
    lanes: dict[str, LaneConfig] = attrs.field(factory=dict)
    """Politeness lanes by domain pattern (fnmatch, e.g. ``"*.example.org"``); empty = none."""
    global_lane: GlobalLaneConfig = attrs.field(factory=GlobalLaneConfig)
    """The token bucket over all domains together."""
    retry: dict[str, RetryPresetConfig] = attrs.field(factory=dict)
    """Backoff presets by name, overriding or adding to the built-in ``default`` and ``fanfic``."""
    retry_preset: str = "default"
    """Backoff preset of job kinds and jobs that name none."""
    download_root: str = ""
    """Folder downloads are confined to; empty = ``<state_dir>/download``."""
    min_free_bytes: int = attrs.field(default=256 * 1024 * 1024, validator=in_range(0))
    """Bytes that must stay free under the download root: below it the queue is paused (reason
    ``disk``) until there is room again; 0 = pause only when a job runs out of space."""
    disk_check_interval: float = attrs.field(default=30.0, validator=in_range(0.01, 3600))
    """Seconds between two checks of the free space while jobs are queued or running."""
