"""Turn recipe steps into concrete requests, and upload replies into results (pure, no I/O).

The Trio/httpx shell in :mod:`hathd.recipes.runner` only sends what these functions plan and
hands back what it received as an :class:`~hathd.recipes.extract.ResponseView`.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping
from pathlib import Path

import attrs

from hathd.errors import PermanentError
from hathd.recipes.extract import ResponseView, extract_all, try_extract
from hathd.recipes.model import Field, Recipe, ResponseSpec, Step
from hathd.recipes.multipart import FilePart, TextPart
from hathd.recipes.output import web_url
from hathd.recipes.template import render
from hathd.recipes.thumbnails import Thumbnail


class FileRefusedError(PermanentError):
    """A recipe's file field names a path other than the job's own file."""


FILE_FIELD_VALUES = ("", "{file}")
"""The only values a ``file`` field may have: the job's own file, implicitly or explicitly."""


def check_file_fields(recipe: Recipe) -> None:
    """Refuse a recipe whose ``file`` field's ``value`` is anything but empty or exactly
    ``{file}`` (the loader rejects such recipes already; this guards recipes built in code,
    before any request is sent).

    :raises FileRefusedError: such a field, named.
    """
    for name, field in recipe.upload.fields.items():
        if field.type == "file" and field.value not in FILE_FIELD_VALUES:
            raise FileRefusedError(
                f"recipe {recipe.id!r} field {name!r} asks for {field.value!r}; a recipe may"
                " read only the job's own file ('{file}')"
            )


@attrs.frozen
class RequestPlan:
    """One request ready to send. ``form`` is sent URL-encoded; ``parts`` as multipart
    (exactly one of them, or neither for a body-less request)."""

    step: str
    method: str
    url: str
    headers: dict[str, str] = attrs.field(factory=dict)
    query: dict[str, str] = attrs.field(factory=dict)
    form: dict[str, str] | None = None
    parts: list[TextPart | FilePart] | None = None
    cookies: bool = True
    follow_redirects: bool = True
    expect: tuple[int, ...] = ()


def absolute_url(url: str, base_url: str) -> str:
    """``url`` as given when it has a scheme; else joined to ``base_url`` (``/path``)."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
        return url
    return base_url.rstrip("/") + "/" + url.lstrip("/")


def _render_map(mapping: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    return {k: render(v, values) for k, v in mapping.items()}


def plan_step(step: Step, values: Mapping[str, str]) -> RequestPlan:
    """The request of one chain step with ``values`` substituted.

    :raises TemplateError: a placeholder has no value.
    """
    return RequestPlan(
        step=step.name,
        method=step.method,
        url=absolute_url(render(step.url, values), values.get("base_url", "")),
        headers=_render_map(step.headers, values),
        query=_render_map(step.query, values),
        form=_render_map(step.form, values) if step.form else None,
        cookies=step.cookies,
        follow_redirects=step.follow_redirects,
        expect=tuple(step.expect),
    )


def file_values(path: Path, size: int) -> dict[str, str]:
    """The template values describing the job's file (``file`` is its absolute path)."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return {
        "file": str(path),
        "filename": path.name,
        "stem": path.stem,
        "ext": path.suffix.lstrip("."),
        "mime": mime,
        "size": str(size),
    }


def plan_upload(
    recipe: Recipe, values: Mapping[str, str], job_file: Path, thumb: Thumbnail | None = None
) -> RequestPlan:
    """The upload request for ``job_file`` (whose size is ``values["size"]``).

    A ``file`` field always sends ``job_file`` (:func:`check_file_fields`); a ``thumbnail``
    field sends ``thumb`` (left out when there is none), named ``{thumb_filename}`` with
    type ``{thumb_mime}`` unless the field says otherwise.

    :raises FileRefusedError: a file field asks for anything else.
    :raises TemplateError: a placeholder has no value.
    """
    check_file_fields(recipe)
    up = recipe.upload
    parts: list[TextPart | FilePart] = []
    for name, field in up.fields.items():
        if field.when and not values.get(field.when):
            if field.type == "text" and field.otherwise:
                parts.append(TextPart(name, render(field.otherwise, values)))
            continue
        if field.type == "thumbnail":
            if thumb is None:
                continue
            default = Field()
            parts.append(
                FilePart(
                    name,
                    thumb.path,
                    thumb.size,
                    render(
                        "{thumb_filename}"
                        if field.filename == default.filename
                        else field.filename,
                        values,
                    ),
                    render(
                        "{thumb_mime}"
                        if field.content_type == default.content_type
                        else field.content_type,
                        values,
                    ),
                )
            )
        elif field.type == "file":
            parts.append(
                FilePart(
                    name,
                    job_file,
                    int(values["size"]),
                    render(field.filename, values),
                    render(field.content_type, values),
                )
            )
        elif field.type == "value":
            parts.append(TextPart(name, render("{" + field.value + "}", values)))
        else:
            parts.append(TextPart(name, render(field.value, values)))
    return RequestPlan(
        step="upload",
        method=up.method,
        url=absolute_url(render(up.url, values), values.get("base_url", "")),
        headers=_render_map(up.headers, values),
        query=_render_map(up.query, values),
        parts=parts,
        cookies=up.cookies,
    )


@attrs.frozen
class UploadOutcome:
    """The parsed upload reply: ``ok``; the ``url``, ``thumb`` and ``delete`` links (empty
    when absent); the host's ``message`` on failure; every extracted value."""

    ok: bool
    url: str = ""
    thumb: str = ""
    delete: str = ""
    message: str = ""
    values: dict[str, str] = attrs.field(factory=dict)


def _render_optional(template: str, values: Mapping[str, str]) -> str:
    if not template:
        return ""
    try:
        return render(template, values)
    except ValueError:
        return ""


def render_links(spec: ResponseSpec, values: Mapping[str, str]) -> tuple[str, str, str, str]:
    """The ``url``, ``thumb`` and ``delete`` links rendered over ``values`` (each ``""`` when
    its template cannot be filled or does not give an ``http(s)://`` URL), and the raw
    rendered ``url`` (for the error message)."""
    raw_url = _render_optional(spec.url, values)
    return (
        web_url(raw_url),
        web_url(_render_optional(spec.thumb, values)),
        web_url(_render_optional(spec.delete, values)),
        raw_url,
    )


def parse_upload(
    spec: ResponseSpec, view: ResponseView, values: Mapping[str, str], *, links: bool = True
) -> UploadOutcome:
    """Apply ``spec`` to the upload reply ``view``; ``values`` are the request's values.

    Extractors that find nothing leave their value out; a ``url`` template that then cannot
    be filled means failure, and so does a ``url`` that is not an ``http(s)://`` URL (a host
    must not hand out ``javascript:`` links); a ``thumb`` or ``delete`` that is not one is
    dropped (``""``). With ``links = False`` (the recipe has ``[[upload.result]]`` steps,
    which give the links afterwards) the reply is judged by its status and ``success`` only,
    and the links are left empty.
    """
    found: dict[str, str] = {}
    for name, ex in spec.extract.items():
        try:
            found.update(extract_all({name: ex}, view))
        except LookupError:
            continue
    merged = {**values, **found}
    if links:
        url, thumb, delete, raw_url = render_links(spec, merged)
        ok = 200 <= view.status < 300 and bool(url)
    else:
        url = thumb = delete = raw_url = ""
        ok = 200 <= view.status < 300
    if ok and spec.success is not None:
        got = try_extract("success", spec.success, view)
        ok = got is not None and got == spec.success_value
    message = ""
    if not ok:
        if spec.error is not None:
            message = try_extract("error", spec.error, view) or ""
        if not message and raw_url and not url:
            message = f"HTTP {view.status}: the reply's url is not an http(s) URL: {raw_url[:80]!r}"
        if not message:
            missing = "url" if links and not url else "success value"
            message = f"HTTP {view.status}: no {missing} in reply"
    return UploadOutcome(ok, url, thumb, delete, message, found)
