"""Configuration of the H@H gallery downloader (``[gallery]``).

Defaults follow the official client (``docs/hath-protocol.md`` §6, J162 ``GalleryDownloader``):
3 tries per file, 9 passes over the file list, 1 s after each downloaded file, 5 s after each
failure, 300 s while the download disk is short of ``disk_remaining + 1000 MiB``.
"""

from __future__ import annotations

import attrs

from hathd.confutil import in_range, one_of

MIB = 1024 * 1024

ARCHIVE_MODES = ("keep", "zip", "zip_delete")
"""``keep``: leave the gallery directory; ``zip``: also write ``<dir>.zip``; ``zip_delete``:
write the archive, then remove the directory (as the py-hath seed does)."""


@attrs.frozen
class GalleryConfig:
    """``[gallery]``: where galleries go, how they are fetched and archived.

    Times are seconds, sizes bytes. ``rpc_server`` (``host`` or ``host:port``) overrides the
    control server the ``/15/dl?`` and ``/15/rpc?`` requests go to; empty means the one the
    ``[hath]`` section names, else ``rpc.hentaiathome.net``.
    """

    enabled: bool = True
    """Register the ``gallery`` job kind and the downloader service."""
    download_dir: str | None = None
    """Download root of galleries; unset = ``<state_dir>/download``."""
    archive: str = attrs.field(default="keep", validator=one_of(*ARCHIVE_MODES))
    """What is left of a finished gallery: ``keep``, ``zip`` or ``zip_delete``."""
    max_filename_length: int = attrs.field(default=125, validator=in_range(16, 255))
    """Cap of the gallery directory name in UTF-16 code units (16–255)."""
    tries_per_file: int = attrs.field(default=3, validator=in_range(1, 100))
    """Download tries per file over all passes."""
    max_passes: int = attrs.field(default=9, validator=in_range(1, 100))
    """Passes over the file list per gallery."""
    concurrency: int = attrs.field(default=1, validator=in_range(1, 64))
    """Files of one gallery fetched at once."""
    host_concurrency: int = attrs.field(default=2, validator=in_range(1, 64))
    """Requests (with their pacing pauses) per download host at once."""
    success_delay: float = attrs.field(default=1.0, validator=in_range(0, 3600))
    """Seconds to pause after each downloaded file; 0 = none."""
    failure_delay: float = attrs.field(default=5.0, validator=in_range(0, 3600))
    """Seconds to pause after each failed try; 0 = none."""
    low_disk_delay: float = attrs.field(default=300.0, validator=in_range(0.01, 86400))
    """Seconds between free-space checks while the download disk is low."""
    disk_remaining: int = attrs.field(default=0, validator=in_range(0))
    """Bytes to keep free on the download disk; the server's ``diskremaining_bytes`` wins when
    larger (while the image node runs)."""
    free_space_margin: int = attrs.field(default=1000 * MIB, validator=in_range(0))
    """Extra bytes required free on top of ``disk_remaining`` (default 1000 MiB)."""
    connect_timeout: float = attrs.field(default=5.0, validator=in_range(0.1, 600))
    """Seconds to connect to an image server."""
    read_timeout: float = attrs.field(default=10.0, validator=in_range(0.1, 3600))
    """Seconds without data before a file GET fails."""
    file_timeout: float = attrs.field(default=300.0, validator=in_range(1, 86400))
    """Seconds one whole file download may take."""
    rpc_timeout: float = attrs.field(default=600.0, validator=in_range(1, 86400))
    """Read timeout in seconds of control-server calls (while the image node runs, its client
    and timeout are used instead)."""
    rpc_server: str = ""
    """Control server ``host[:port]`` when no image node runs; empty = ``[hath] rpc_server``."""
