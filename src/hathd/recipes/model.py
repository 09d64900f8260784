"""The recipe format: attrs classes for one image host's declarative HTTP flow.

A recipe is one TOML file per service (see ``docs/recipes.md`` and the built-ins in
``hathd/recipes/builtin/``). Its parts follow ConniesUploader's ``HttpRequestSpec``
(ConniesUploader's plugin creation guide and its architecture notes v2.2–v2.4; ours:
docs/recipes.md): a login chain of
pre-requests (``follow_up_request`` becomes ``then``, to any depth, sharing one cookie jar),
per-file ``prepare`` requests, the multipart ``upload`` with ``file``/``text``/``value`` fields,
and a ``response`` parser; plus ShareX's result names (``url``, ``thumb``, ``delete``) and
ConniesUploader's rate-limit (2 req/s, burst 5) and retry (3 tries, 1 s ×2 up to 30 s, ±20 %,
408/429/5xx) defaults (uploader.go at c0bf072).
"""

from __future__ import annotations

import attrs

from hathd.confutil import FieldError, in_range, one_of
from hathd.recipes.extract import Extractor

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
DEFAULT_RETRYABLE = (408, 429, 500, 502, 503, 504)


def _codes(_inst: object, attr: attrs.Attribute[list[int]], value: list[int]) -> None:
    for code in value:
        if not 100 <= code <= 599:
            raise FieldError(attr.name, f"{code} is not an HTTP status code")


def _nonempty(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not value.strip():
        raise FieldError(attr.name, "must not be empty")


@attrs.frozen
class Credential:
    """A credential the recipe needs, filled from ``[recipes.services."<id>"].credentials``.

    ``secret`` values are redacted from every error and log line.
    """

    name: str = attrs.field(default="", validator=_nonempty)
    secret: bool = True
    required: bool = True
    description: str = ""


@attrs.frozen
class Limits:
    """Politeness: ``rate`` requests/s and ``burst`` for this service's token bucket;
    ``concurrency`` upload jobs at once (the engine lane)."""

    rate: float = attrs.field(default=2.0, validator=in_range(0.0, 10_000))
    burst: int = attrs.field(default=5, validator=in_range(1, 10_000))
    concurrency: int = attrs.field(default=2, validator=in_range(1, 1000))


@attrs.frozen
class RetryPolicy:
    """Retries inside one job try: up to ``max_retries`` more requests after a retryable
    status (``retryable_codes``) or a network error, waiting ``initial_backoff`` ×
    ``multiplier``^n seconds (capped at ``max_backoff``, ±``jitter`` fraction), or the
    server's ``Retry-After`` when that is longer. A ``Retry-After`` above ``max_retry_after``
    seconds ends the try at once with ``RateLimitedError`` so the engine waits instead."""

    max_retries: int = attrs.field(default=3, validator=in_range(0, 100))
    initial_backoff: float = attrs.field(default=1.0, validator=in_range(0.0, 3600))
    max_backoff: float = attrs.field(default=30.0, validator=in_range(0.0, 86_400))
    multiplier: float = attrs.field(default=2.0, validator=in_range(1.0, 100))
    jitter: float = attrs.field(default=0.2, validator=in_range(0.0, 1.0))
    retryable_codes: list[int] = attrs.field(
        factory=lambda: list(DEFAULT_RETRYABLE), validator=_codes
    )
    max_retry_after: float = attrs.field(default=60.0, validator=in_range(0.0, 86_400))


@attrs.frozen
class SessionSpec:
    """How long a login lasts (``ttl`` seconds) and how an expired one shows: a status in
    ``relogin_status`` or a final URL matching the regex ``relogin_url``."""

    ttl: float = attrs.field(default=3600.0, validator=in_range(1.0, 10 * 86_400))
    relogin_status: list[int] = attrs.field(factory=lambda: [401], validator=_codes)
    relogin_url: str = ""


@attrs.frozen
class Step:
    """One request of a chain (login, prepare, gallery).

    ``url``, ``headers``, ``query`` and ``form`` values are templates. ``cookies = false``
    sends the request without the service's cookie jar (and keeps its cookies out of it).
    ``expect`` lists the acceptable statuses (empty: any 2xx or 3xx). ``extract`` maps value
    names to extractors; ``then`` holds child requests, which see this step's values.
    """

    name: str = attrs.field(default="", validator=_nonempty)
    url: str = attrs.field(default="", validator=_nonempty)
    method: str = attrs.field(default="GET", validator=one_of(*METHODS))
    headers: dict[str, str] = attrs.field(factory=dict)
    query: dict[str, str] = attrs.field(factory=dict)
    form: dict[str, str] = attrs.field(factory=dict)
    cookies: bool = True
    follow_redirects: bool = True
    expect: list[int] = attrs.field(factory=list, validator=_codes)
    extract: dict[str, Extractor] = attrs.field(factory=dict)
    then: list[Step] = attrs.field(factory=list)


@attrs.frozen
class Field:
    """A multipart field of the upload.

    ``type = "file"``: the job's file; ``value`` must be empty or exactly ``{file}`` (the
    loader rejects anything else). ``type = "text"``: ``value`` is a template.
    ``type = "value"``: ``value`` is the name of an extracted value (ConniesUploader's
    ``dynamic``). ``type = "thumbnail"``: the thumbnail hathd made of the job's file (the
    recipe's ``[thumbnail]``; ``value`` must be empty). ``filename`` and
    ``content_type`` (templates) apply to file fields. ``when`` names a value: the field is
    sent only when that value is non-empty (e.g. ``when = "gallery_id"``); when it is empty,
    ``otherwise`` (a template, for text fields) is sent instead, or nothing when that is empty
    too (TurboImageHost: a gallery's shared ``upload_id``, else a fresh one per file).
    """

    type: str = attrs.field(default="text", validator=one_of("file", "text", "value", "thumbnail"))
    value: str = ""
    when: str = ""
    otherwise: str = ""
    filename: str = "{filename}"
    content_type: str = "{mime}"


@attrs.frozen
class ResponseSpec:
    """How the upload reply becomes a result.

    ``extract`` runs first (all optional: a value that is not found is simply absent); then
    ``url``, ``thumb`` and ``delete`` are templates over every known value. Success means a
    2xx status, a non-empty ``url`` and, when ``success`` names an extractor, its value equal
    to ``success_value``. ``error`` extracts the host's own message for a failed upload.
    """

    url: str = attrs.field(default="", validator=_nonempty)
    thumb: str = ""
    delete: str = ""
    extract: dict[str, Extractor] = attrs.field(factory=dict)
    success: Extractor | None = None
    success_value: str = "true"
    error: Extractor | None = None


@attrs.frozen
class UploadSpec:
    """The upload request: a multipart POST (by default) of ``fields`` to ``url``.

    ``result`` holds follow-up steps for hosts whose upload reply does not carry the links
    but points at a result page (ImageBam's ``{"success": URL}``, XFileSharing's
    ``op=upload_result`` form, TurboImageHost's ``newUrl``): they run once per file, after an
    accepted reply, in order (children after their parent), through the same client, cookie
    jar, rate limiter and retries as every step, seeing every known value plus the reply's
    ``response.extract`` values. Every value they extract is required (one that is missing
    fails the upload naming the recipe, step and value); then ``response.url``, ``thumb`` and
    ``delete`` are rendered over all of them. A result step's extractors are templates too,
    each value escaped for the extractor's kind (:func:`hathd.recipes.extract.bind_extractor`),
    so a page listing many files is searched for the file's own entry (``{filename}``). A
    result step never logs in again (that would send the file twice).
    """

    url: str = attrs.field(default="", validator=_nonempty)
    method: str = attrs.field(default="POST", validator=one_of(*METHODS))
    headers: dict[str, str] = attrs.field(factory=dict)
    query: dict[str, str] = attrs.field(factory=dict)
    fields: dict[str, Field] = attrs.field(factory=dict)
    cookies: bool = True
    response: ResponseSpec = attrs.field(factory=ResponseSpec)
    result: list[Step] = attrs.field(factory=list)


@attrs.frozen
class GallerySpec:
    """Optional gallery steps, each a chain of :class:`Step`:

    - ``create`` runs once per batch, before its first file (``{gallery_name}`` known), and
      must extract ``gallery_id``; every value it extracts is kept for the batch's uploads
      and for the later steps. A host whose client picks the gallery's id itself (a
      TurboImageHost ``upload_id`` shared by the gallery's files) has no create step and
      gives the template ``id`` instead (e.g. ``"{random_id}"``).
    - ``finalize`` runs once every upload of the batch has ended (successfully or not), then
      ``rename`` (for hosts whose galleries get their name only afterwards), then ``result``:
      follow-up requests whose extracted values (all required) are added to the gallery's
      values, typically ``gallery_url`` read from a result page that shows the gallery's
      link only after its uploads (ImageBam's ``/upload/complete?session=ID``,
      TurboImageHost's ``html5_upload_result.tu?upload_id=ID``); their extractors are
      templates as in ``UploadSpec.result``.

    Without a gallery those values are empty strings.

    ``url`` is the template of the gallery's public link (over the gallery's and the
    session's values), used when ``create`` extracts no ``gallery_url`` itself; a
    ``gallery_url`` extracted by ``result`` replaces it. ``credentials`` names credentials
    that galleries need even though plain uploads do not (a web login next to an API key): a
    gallery without them is refused before any request.
    """

    create: list[Step] = attrs.field(factory=list)
    finalize: list[Step] = attrs.field(factory=list)
    rename: list[Step] = attrs.field(factory=list)
    result: list[Step] = attrs.field(factory=list)
    id: str = ""
    url: str = ""
    credentials: list[str] = attrs.field(factory=list)


THUMBNAIL_FORMATS = ("JPEG", "PNG", "WEBP")
"""Formats a local thumbnail may be written in (Pillow's format names)."""


@attrs.frozen
class ThumbnailSpec:
    """A thumbnail hathd makes of each file before the upload (Pillow, in a worker thread):
    at most ``size`` × ``size`` pixels, aspect ratio kept, written as ``format`` (``JPEG``,
    ``PNG`` or ``WEBP``; ``quality`` 1–95 for the lossy ones). A ``type = "thumbnail"``
    field sends it; its width and height (pixels) go to the output templates."""

    size: int = attrs.field(default=180, validator=in_range(16, 2000))
    format: str = attrs.field(default="JPEG", validator=one_of(*THUMBNAIL_FORMATS))
    quality: int = attrs.field(default=85, validator=in_range(1, 95))


DERIVE_FUNCTIONS = ("md5", "sha1", "sha256")
"""Hash functions a ``[derive]`` value may apply to a template (hex digest of its UTF-8)."""


def _derive(_inst: object, attr: attrs.Attribute[dict[str, str]], value: dict[str, str]) -> None:
    for name, spec in value.items():
        func, sep, _template = spec.partition(":")
        if not sep or func not in DERIVE_FUNCTIONS:
            raise FieldError(
                f"{attr.name}.{name}",
                f"must be FUNCTION:TEMPLATE with FUNCTION one of {', '.join(DERIVE_FUNCTIONS)}",
            )


@attrs.frozen(kw_only=True)
class Site:
    """What every recipe has: the service's id, base URL, credentials, options, politeness,
    retries, session and login chain. ``id`` is the service name and the engine lane's domain.

    ``derive`` adds values computed from a template when the session starts, e.g.
    ``password_md5 = "md5:{password}"`` for a vBulletin login form (hex digest of the UTF-8
    text); derived values are secret when their template names a secret.
    """

    id: str = attrs.field(default="", validator=_nonempty)
    base_url: str = attrs.field(default="", validator=_nonempty)
    name: str = ""
    description: str = ""
    credentials: list[Credential] = attrs.field(factory=list)
    options: dict[str, str] = attrs.field(factory=dict)
    derive: dict[str, str] = attrs.field(factory=dict, validator=_derive)
    limits: Limits = attrs.field(factory=Limits)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    session: SessionSpec = attrs.field(factory=SessionSpec)
    login: list[Step] = attrs.field(factory=list)

    @property
    def secrets(self) -> frozenset[str]:
        """Names of the secret credentials."""
        return frozenset(c.name for c in self.credentials if c.secret)


@attrs.frozen(kw_only=True)
class Recipe(Site):
    """One image host: the per-file ``prepare`` chain, the multipart ``upload``, optional
    ``gallery`` steps, an optional local ``thumbnail``, and the files it accepts
    (``max_file_size`` bytes, ``extensions``)."""

    upload: UploadSpec = attrs.field(factory=UploadSpec)
    prepare: list[Step] = attrs.field(factory=list)
    gallery: GallerySpec | None = None
    thumbnail: ThumbnailSpec | None = None
    max_file_size: int | None = attrs.field(default=None, validator=in_range(1))
    extensions: list[str] = attrs.field(factory=list)


FORUM_OUTCOMES = ("relogin", "rate_limited", "refused", "retry")
"""What a forum reply that matches an error pattern means (see :class:`ForumError`)."""


@attrs.frozen
class ForumError:
    """A forum's error page, recognised by the regex ``match`` over the reply body.

    ``outcome``: ``relogin`` (the security token or session expired: log in again and send
    once more), ``rate_limited`` (flood control: wait the seconds captured by the named group
    ``seconds``, else ``default_wait``), ``refused`` (permanent: no permission, thread closed),
    ``retry`` (transient: the engine tries again later).
    """

    match: str = attrs.field(default="", validator=_nonempty)
    outcome: str = attrs.field(default="refused", validator=one_of(*FORUM_OUTCOMES))
    default_wait: float = attrs.field(default=30.0, validator=in_range(0.0, 86_400))


@attrs.frozen
class ForumSpec:
    """How a forum takes a post.

    ``reply`` posts ``{message}`` to thread ``{thread_id}``; ``thread`` (optional) opens a
    new thread ``{subject}`` in forum ``{forum_id}``. ``post_id`` is a regex whose group 1 is
    the new post's id, tried on the reply's final URL and then on its body (vBulletin
    redirects to ``showthread.php?p=ID``); ``new_thread_id`` likewise finds a new thread's
    id (``showthread.php?t=ID``); ``post_url`` is the template of a post's link
    (``{post_id}``, relative to ``base_url``).

    ``find`` fetches the thread's newest page, so that a post whose outcome is unknown (the
    daemon died while sending it) is looked for before it is sent again: ``posts`` is a CSS
    selector of the posts' message elements on that page, ``post_id_attr`` a regex over
    their ``id`` attribute giving the post id. ``errors`` are the forum's error pages,
    tried in order.
    """

    reply: Step
    find: Step
    thread: Step | None = None
    post_id: str = r"[?&;]p=(\d+)"
    new_thread_id: str = r"[?&;]t=(\d+)"
    post_url: str = "/showthread.php?p={post_id}#post{post_id}"
    posts: str = "[id^=post_message_]"
    post_id_attr: str = r"post_message_(\d+)"
    errors: list[ForumError] = attrs.field(factory=list)
    message_template: str = ""
    """A Jinja2 template (sandboxed) of the post; empty = the built-in one (docs/recipes.md)."""


def _forum_limits() -> Limits:
    # the forum's own politeness: 1 request/s, burst 3, one post at a time
    # (ConniesUploader's ViperGirls limiter, uploader.go at c0bf072)
    return Limits(rate=1.0, burst=3, concurrency=1)


@attrs.frozen(kw_only=True)
class ForumRecipe(Site):
    """A forum to post batches' links to (``kind = "forum"`` in the TOML file)."""

    limits: Limits = attrs.field(factory=_forum_limits)
    forum: ForumSpec
