"""Configuration of the Hentai@Home image node (``[hath]``)."""

from __future__ import annotations

import attrs

from hathd.confutil import secret


@attrs.frozen
class HathConfig:
    """``[hath]``: off until credentials are configured."""

    enabled: bool = False
    client_id: int | None = None
    client_key: str | None = secret()
