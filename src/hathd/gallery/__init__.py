"""The H@H gallery downloader: ``fetchqueue`` → one ``gallery`` job per gallery → verified files,
``galleryinfo.txt`` and an optional ZIP archive (``docs/hath-protocol.md`` §6).

Modules, each with one concern:

- :mod:`.config` — ``[gallery]`` settings (:class:`~.config.GalleryConfig`);
- :mod:`.naming` — title cleaning, the capped directory name, safe file names (sans-IO);
- :mod:`.plan` — verify/retry/pass/pacing decisions and ``dlfetch``/``dlfails`` payloads (sans-IO);
- :mod:`.rpc` — ``fetchqueue``/``dlfetch``/``dlfails`` over the image node's RPC client;
- :mod:`.fetch` — one file GET streamed to disk with its SHA-1;
- :mod:`.hosts` — per-download-host politeness;
- :mod:`.storage`, :mod:`.archive` — blocking filesystem steps (directory, hashing, ZIP);
- :mod:`.handler` — the ``gallery`` job handler;
- :mod:`.downloader` — the service that runs the queue on ``start_downloader``;
- :mod:`.plugin`, :mod:`.api`, :mod:`.cli` — daemon wiring, admin routes, ``hathd hath download``.

The metadata parser lives with the protocol: :mod:`hathd.hath.gallery_meta`.
"""
