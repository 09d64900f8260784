"""Configuration of the job engine (``[engine]``)."""

from __future__ import annotations

import attrs

from hathd.confutil import in_range


@attrs.frozen
class LaneConfig:
    """Politeness of one domain pattern: concurrent jobs, token-bucket rate (jobs/s) and burst."""

    concurrency: int = attrs.field(default=1, validator=in_range(1, 1000))
    rate: float = attrs.field(default=0.0, validator=in_range(0))
    burst: int = attrs.field(default=1, validator=in_range(1))


@attrs.frozen
class EngineConfig:
    """``[engine]``: worker pool, timeouts, retry preset, lanes by domain pattern."""

    workers: int = attrs.field(default=4, validator=in_range(1, 1024))
    job_timeout: float = attrs.field(default=6 * 3600.0, validator=in_range(1))
    lanes: dict[str, LaneConfig] = attrs.field(factory=dict)
