"""The Hentai@Home image node (docs/hath.md).

- :mod:`.protocol` — sans-IO protocol: fileids, keystamps, servercmd/speed-test keys, RPC URLs
  and actkeys, reply parsing (also used by the gallery downloader);
- :mod:`.wire`, :mod:`.limits`, :mod:`.pruning` — sans-IO HTTP, admission/throttle and cache
  rules;
- :mod:`.rpc`, :mod:`.tls`, :mod:`.cache`, :mod:`.proxy`, :mod:`.server` — the Trio shells;
- :mod:`.node` — the RPC keeper that runs them; :mod:`.plugin`, :mod:`.cli` — daemon wiring;
- :mod:`.gallery_meta` — gallery metadata parsing for the downloader (``hathd.gallery``).
"""
