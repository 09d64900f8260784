"""Configuration of MQTT and seedbox transfers (``[mqtt]``, ``[q4d]``)."""

from __future__ import annotations

import attrs


@attrs.frozen
class MqttConfig:
    """``[mqtt]``: the broker."""

    host: str = "127.0.0.1"
    port: int = 1883


@attrs.frozen
class Q4DConfig:
    """``[q4d]``: seedbox transfers, off by default."""

    enabled: bool = False
