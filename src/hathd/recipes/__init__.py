"""Declarative image-host uploads (ConniesUploader's flows as TOML recipes).

Pure parts (no I/O): :mod:`.model` (the recipe format), :mod:`.loader` (TOML → validated
recipes, key-path errors), :mod:`.template` (safe ``{name}`` substitution), :mod:`.extract`
(JSONPath / CSS / regex / header / final URL), :mod:`.plan` (steps → requests, replies →
results, the own-file rule), :mod:`.retry`, :mod:`.ratelimit` (token buckets),
:mod:`.multipart`, :mod:`.output` (BBCode / HTML / Markdown), :mod:`.redact`.

Trio/httpx shell: :mod:`.runner` (one session per service: cookie jar, login reuse,
retries, streamed uploads) and :mod:`.uploader` (sessions by service). Daemon side:
:mod:`.uploads` (the ``upload`` job kind, batches, galleries), :mod:`.batches` (store),
:mod:`.api` (admin routes), :mod:`.cli` (commands), :mod:`.plugin`. See ``docs/recipes.md``.
"""
