"""The Hentai@Home image node (docs/hath.md).

- :mod:`.protocol` — sans-IO protocol: fileids, keystamps, servercmd/speed-test keys, RPC URLs
  and actkeys, reply parsing (also used by the gallery downloader);
- :mod:`.wire`, :mod:`.limits`, :mod:`.pruning` — sans-IO HTTP, admission/throttle and cache
  rules;
- :mod:`.rpc`, :mod:`.tls`, :mod:`.cache`, :mod:`.proxy`, :mod:`.server` — the Trio shells;
- :mod:`.node` — the RPC keeper that runs them; :mod:`.plugin`, :mod:`.cli` — daemon wiring;
- :mod:`.gallery_meta` — gallery metadata parsing for the downloader (``hathd.gallery``).
"""

import sys

# httpx's package init imports its command-line client (``httpx._main``: click, rich,
# pygments) whenever those happen to be installed, ~6 MB of resident memory that no part of
# hathd uses. A ``None`` entry in ``sys.modules`` makes that one import fail, which httpx
# handles by leaving ``httpx.main`` a stub (httpx/__init__.py; the import system's documented
# rule: https://docs.python.org/3/reference/import.html#the-module-cache). No effect if httpx
# was imported before.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
