"""Notifications from every pipeline through Apprise: per event kind URLs and quiet hours.

:mod:`hathd.notify.sender` queues and sends, :mod:`hathd.notify.messages` turns bus events
into messages, :mod:`hathd.notify.disk` watches free space, :mod:`hathd.notify.plugin` wires
them into the daemon. Configuration: :mod:`hathd.notify.config` (``[notify]``).
"""

from hathd.notify.config import EVENT_KINDS, NotifyConfig
from hathd.notify.sender import Notification, Notifier, NotifierStatistics

__all__ = ["EVENT_KINDS", "Notification", "Notifier", "NotifierStatistics", "NotifyConfig"]
