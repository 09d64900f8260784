"""Configuration of the IMAP watcher, fanfiction jobs and notifications."""

from __future__ import annotations

import attrs


@attrs.frozen
class ImapConfig:
    """``[imap]``: the mailbox watched for story URLs."""

    host: str = ""


@attrs.frozen
class FanficConfig:
    """``[fanfic]``: FanFicFare and Calibre, off by default."""

    enabled: bool = False


@attrs.frozen
class NotifyConfig:
    """``[notify]``: Apprise URLs."""

    urls: list[str] = attrs.field(factory=list)
