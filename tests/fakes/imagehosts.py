"""Local fake image hosts: real HTTP servers (quart-trio on hypercorn, 127.0.0.1, port 0).

Each fake implements one flow of the built-in recipes the way the real site behaves as far as
the upload client can see (cookies, CSRF tokens, hidden form inputs, JavaScript-embedded
endpoints, multipart form parsing, JSON and HTML replies) and records every request it
received, so tests can assert the exact requests and the URLs the uploads returned.

- :class:`FakeImx` — API key in ``X-API-KEY``, JSON reply; galleries on the web side
  (``/login.php`` form, ``/user/gallery/add`` redirecting to ``…/manage?id=ID``), uploads
  joining one with ``gallery_id``.
- :class:`FakePixhost` — anonymous upload with ``Accept: application/json``, galleries.
- :class:`FakeVipr` — login form (cookie ``xfss``), hidden ``sess_id`` on the home page,
  the upload's hand-over form, then ``op=upload_result`` with the links; an expired session
  redirects to ``/login.html``; galleries are XFileSharing folders made by
  ``op=ajax_new_folder`` (reply: ``<option value="ID">NAME</option>``).
- :class:`FakeTurbo` — the upload endpoint appears only in the home page's JavaScript; the
  reply's ``newUrl`` is the result page with the links; galleries share one ``upload_id``.
- :class:`FakeImageBam` — Laravel-style login: ``_token`` form field, session cookie, a
  ``csrf-token`` meta tag, ``X-CSRF-TOKEN`` header, an upload-session token; 419 on a CSRF
  mismatch, 403 on wrong credentials; an upload session with ``gallery=true`` and a
  ``gallery_title`` makes the named gallery; an upload answers ``{"success": URL}`` of
  ``/upload/complete?session=ID``, which holds the links and links the gallery.
- :class:`FakeThumbHost` — a generic host that takes a locally made thumbnail with the
  image (``thumb`` part), for the ``[thumbnail]`` recipe table.

Links returned by the fakes name the real public hosts with an id derived from the file's
content (:func:`content_id`), so a test can compute the URL it expects.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from quart import Response, g, has_request_context, redirect, request
from quart_trio import QuartTrio
from werkzeug.wrappers.response import Response as WerkzeugResponse

Reply = Response | WerkzeugResponse | tuple[str, int]
"""What a fake's route returns: a response (``redirect`` gives werkzeug's), or body and status."""


def content_id(data: bytes) -> str:
    """The id the fakes give an uploaded file: the first 10 hex digits of its SHA-256."""
    return hashlib.sha256(data).hexdigest()[:10]


@attrs.frozen
class UploadedFile:
    """A file part as received: file name, declared content type and the bytes."""

    filename: str
    content_type: str
    data: bytes


@attrs.frozen
class Recorded:
    """One request as the fake received it (header names in lower case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]
    files: dict[str, UploadedFile]
    cookies: dict[str, str]

    @property
    def line(self) -> str:
        """``METHOD /path``."""
        return f"{self.method} {self.path}"


@attrs.frozen
class Injected:
    """A canned reply served instead of the real one."""

    status: int
    headers: dict[str, str]
    body: bytes


class FakeHost:
    """Base of the fakes: request log (``requests``, and arrival ``times`` in
    ``time.monotonic()`` seconds; ``arrived`` is set by the first request), failure
    injection, a ``gate`` (when set to an Event, replies wait for it), ``holds`` (path → Event:
    replies to that path wait for it), the quart-trio app."""

    name = "fake"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.times: list[float] = []
        self.arrived = trio.Event()
        self.gate: trio.Event | None = None
        self.holds: dict[str, trio.Event] = {}
        self.base_url = ""
        self._inject: dict[str, list[Injected]] = {}
        self.keep_file_data = True
        self.app = QuartTrio(f"fake-{self.name}")
        self.app.config["MAX_CONTENT_LENGTH"] = None
        self.app.before_request(self._before)
        self.routes()

    def routes(self) -> None:
        """Register the host's routes on ``self.app``."""

    def inject(
        self,
        path: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests to ``path`` with ``status`` (recorded as usual)."""
        self._inject.setdefault(path, []).extend([Injected(status, headers or {}, body)] * times)

    def lines(self) -> list[str]:
        """Every recorded request as ``METHOD /path``."""
        return [r.line for r in self.requests]

    async def _before(self) -> Response | None:
        self.times.append(time.monotonic())
        form = await request.form
        files: dict[str, UploadedFile] = {}
        for name, storage in (await request.files).items():
            data = storage.read()
            files[name] = UploadedFile(
                storage.filename or "",
                storage.content_type or "",
                data if self.keep_file_data else hashlib.sha256(data).digest(),
            )
        recorded = Recorded(
            request.method,
            request.path,
            dict(request.args.items()),
            {k.lower(): v for k, v in request.headers.items()},
            dict(form.items()),
            files,
            dict(request.cookies.items()),
        )
        self.requests.append(recorded)
        g.recorded = recorded
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        hold = self.holds.get(request.path)
        if hold is not None:
            await hold.wait()
        queue = self._inject.get(request.path)
        if queue:
            canned = queue.pop(0)
            return Response(canned.body, status=canned.status, headers=canned.headers)
        return None

    @property
    def last(self) -> Recorded:
        """Inside a route: the request being answered (others may have arrived while it was
        held); outside: the most recent request."""
        if has_request_context():
            recorded: Recorded = g.recorded
            return recorded
        return self.requests[-1]


def _json_error(http_status: int, /, **body: Any) -> tuple[dict[str, Any], int]:
    return body, http_status


class FakeImx(FakeHost):
    """IMX.to's API: ``POST /v1/upload.php`` with ``X-API-KEY``; and the web site's login and
    gallery forms (``galleries``: id → ``{"name", "public", "images"}``)."""

    name = "imx"

    def __init__(self, api_key: str, username: str = "", password: str = "") -> None:
        self.api_key = api_key
        self.username = username
        self.password = password
        self.sessions: set[str] = set()
        self.galleries: dict[str, dict[str, Any]] = {}
        super().__init__()

    def _logged_in(self) -> bool:
        return self.last.cookies.get("PHPSESSID", "") in self.sessions

    def routes(self) -> None:
        @self.app.post("/login.php")
        async def login() -> Reply:
            form = self.last.form
            if (
                form.get("doLogin") != "Login"
                or not self.username
                or form.get("usr_email") != self.username
                or form.get("pwd") != self.password
            ):
                return '<form action="/login.php"><input name="usr_email"></form>', 200
            cookie = secrets.token_hex(8)
            self.sessions.add(cookie)
            reply = redirect("/user/dashboard")
            reply.set_cookie("PHPSESSID", cookie, httponly=True)
            return reply

        @self.app.get("/user/dashboard")
        async def dashboard() -> Reply:
            if not self._logged_in():
                return redirect("/login.php")
            return "<html>dashboard</html>", 200

        @self.app.post("/user/gallery/add")
        async def add_gallery() -> Reply:
            if not self._logged_in():
                return redirect("/login.php")
            form = self.last.form
            if form.get("submit_new_gallery") != "Add" or not form.get("gallery_name"):
                return "<html>Gallery name required</html>", 200
            ident = secrets.token_hex(3)
            self.galleries[ident] = {
                "name": form["gallery_name"],
                "public": form.get("public_gallery") == "1",
                "images": [],
            }
            return redirect(f"/user/gallery/manage?id={ident}")

        @self.app.get("/user/gallery/manage")
        async def manage() -> Reply:
            if not self._logged_in():
                return redirect("/login.php")
            return "<html>manage gallery</html>", 200

        @self.app.post("/v1/upload.php")
        async def upload() -> tuple[dict[str, Any], int]:
            if request.headers.get("X-API-KEY") != self.api_key:
                return _json_error(401, status="error", message="Invalid API key")
            rec = self.last
            image = rec.files.get("image")
            if image is None:
                return _json_error(400, status="error", message="no image")
            gallery_id = rec.form.get("gallery_id")
            if gallery_id is not None:
                if gallery_id not in self.galleries:
                    return _json_error(400, status="error", message="Invalid gallery")
                self.galleries[gallery_id]["images"].append(image.filename)
            ident = content_id(image.data)
            size = rec.form.get("thumbnail_size", "2")
            return {
                "status": "success",
                "data": {
                    "image_url": f"https://imx.to/i/{ident}",
                    "thumbnail_url": f"https://imx.to/u/t/{size}/{ident}.jpg",
                },
            }, 200


class FakePixhost(FakeHost):
    """Pixhost.to's API: ``POST /images``, ``POST /galleries``, ``…/finalize``."""

    name = "pixhost"

    def __init__(self) -> None:
        self.galleries: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        super().__init__()

    def routes(self) -> None:
        @self.app.post("/images")
        async def images() -> tuple[dict[str, Any], int]:
            rec = self.last
            if "application/json" not in rec.headers.get("accept", ""):
                return _json_error(406, error_msg="Accept: application/json required")
            img = rec.files.get("img")
            if img is None:
                return _json_error(400, error_msg="img missing")
            if rec.form.get("content_type") not in ("0", "1"):
                return _json_error(400, error_msg="content_type must be 0 or 1")
            ghash = rec.form.get("gallery_hash")
            if ghash is not None:
                gallery = self.galleries.get(ghash)
                if gallery is None or gallery["upload_hash"] != rec.form.get("gallery_upload_hash"):
                    return _json_error(400, error_msg="bad gallery")
                if gallery["finalized"]:
                    return _json_error(400, error_msg="gallery finalized")
                gallery["images"].append(img.filename)
            ident = content_id(img.data)
            return {
                "name": img.filename,
                "show_url": f"https://pixhost.to/show/{ident}/{img.filename}",
                "th_url": f"https://t0.pixhost.to/thumbs/{ident}/{img.filename}",
            }, 200

        @self.app.post("/galleries")
        async def galleries() -> tuple[dict[str, Any], int]:
            name = self.last.form.get("gallery_name", "")
            if not name:
                return _json_error(400, error_msg="gallery_name missing")
            n = next(self._ids)
            ghash, uhash = f"g{n:04d}", f"u{n:04d}"
            self.galleries[ghash] = {
                "name": name,
                "upload_hash": uhash,
                "images": [],
                "finalized": False,
            }
            return {
                "gallery_name": name,
                "gallery_hash": ghash,
                "gallery_upload_hash": uhash,
                "gallery_url": f"https://pixhost.to/gallery/{ghash}",
            }, 200

        @self.app.post("/galleries/<ghash>/finalize")
        async def finalize(ghash: str) -> tuple[dict[str, Any], int]:
            gallery = self.galleries.get(ghash)
            if gallery is None or gallery["upload_hash"] != self.last.form.get(
                "gallery_upload_hash"
            ):
                return _json_error(400, error_msg="bad gallery")
            gallery["finalized"] = True
            return {}, 200


_LOGIN_PAGE = """<html><body>{error}<form method="POST" action="/login.html">
<input type="hidden" name="op" value="login"><input name="login"><input name="password"
type="password"></form></body></html>"""


class FakeVipr(FakeHost):
    """Vipr.im (SibSoft's XFileSharing image host): login form, ``sess_id`` and the folder
    select ``fld_id`` on the home page, galleries made by ``op=ajax_new_folder`` (reply: one
    ``<option>``), HTML links.

    The gallery protocol follows the upload page script of the same script family
    (imagetwist.com: ``$.post("/", {op: "ajax_new_folder", folder: x})``, a reply not starting
    with ``<option`` is shown as an error) and conniecombs/Version-2.5 ``modules/api.py``
    (``create_vipr_gallery``); like XFileSharing's ``index`` dispatcher, a user-only ``op``
    without a login answers with the login page. The upload is answered with XFileSharing's
    hand-over form (``<textarea name='fn'>CODE</textarea>``, ``op`` = ``upload_result``), and
    ``POST /`` with ``op=upload_result``, ``fn=CODE``, ``st=OK`` gives the page holding
    ``input[name=link_url]`` and ``input[name=thumb_url]`` (conniecombs/ConniesUploader
    ``uploader.go`` ``uploadVipr``, conniecombs/Version-2.5 ``ViprUploader``). The wording of
    the fake's error messages is its own (the real texts were not found in public sources)."""

    name = "vipr"

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self.sessions: dict[str, str] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        """fld_id → ``{"name", "images"}``."""
        self._folder_ids = itertools.count(101)
        self.files: dict[str, str] = {}
        """file code → file name, of every upload."""
        super().__init__()

    def expire_sessions(self) -> None:
        """Forget every login (the next upload is redirected to the login page)."""
        self.sessions.clear()

    def routes(self) -> None:
        @self.app.post("/login.html")
        async def login() -> Reply:
            form = self.last.form
            if (
                form.get("op") != "login"
                or form.get("login") != self.username
                or form.get("password") != self.password
            ):
                page = _LOGIN_PAGE.format(
                    error='<div class="err">Incorrect Login or Password</div>'
                )
                return page, 200
            cookie = secrets.token_hex(8)
            self.sessions[cookie] = secrets.token_hex(6)
            reply = redirect("/")
            reply.set_cookie("xfss", cookie, httponly=True)
            return reply

        @self.app.get("/login.html")
        async def login_page() -> tuple[str, int]:
            return _LOGIN_PAGE.format(error=""), 200

        @self.app.post("/")
        async def index_post() -> Reply:
            rec = self.last
            if rec.form.get("op") == "upload_result":
                return upload_result(rec)
            if rec.cookies.get("xfss", "") not in self.sessions:
                return _LOGIN_PAGE.format(error=""), 200
            if rec.form.get("op") != "ajax_new_folder":
                return '<html><div class="err">Unknown operation</div></html>', 200
            name = rec.form.get("folder", "").strip()
            if not name:
                return "Folder name is required", 200
            fld_id = str(next(self._folder_ids))
            self.folders[fld_id] = {"name": name, "images": []}
            return f'<option value="{fld_id}">{html.escape(name)}</option>', 200

        def upload_result(rec: Recorded) -> Reply:
            code = rec.form.get("fn", "")
            found = self.files.get(code)
            if found is None or rec.form.get("st") != "OK":
                return '<html><div class="err">No such file</div></html>', 200
            link, thumb = self.links(code, found)
            return (
                "<html><body><h2>Files uploaded</h2>"
                f'<div class="grey_block"><div>{html.escape(found)}</div>'
                f'<a href="{link}"><img src="{thumb}"></a>'
                f'<input name="link_url" value="{link}">'
                f'<input name="thumb_url" value="{thumb}"></div>'
                "</body></html>",
                200,
            )

        @self.app.get("/")
        async def home() -> Reply:
            sess = self.sessions.get(self.last.cookies.get("xfss", ""))
            if sess is None:
                return redirect("/login.html")
            options = "".join(
                f'<option value="{i}">{html.escape(f["name"])}</option>'
                for i, f in self.folders.items()
            )
            return (
                f'<html><body><form name="file" id="uploadfile" method="POST"'
                f' enctype="multipart/form-data" action="/cgi-bin/upload.cgi?upload_type=file">'
                f'<input type="hidden" name="sess_id" value="{sess}">'
                f'<select name="fld_id"><option value="0">-</option>{options}'
                f'<option value="000">New gallery</option></select>'
                f'<input type="file" name="file_0"></form></body></html>',
                200,
            )

        @self.app.post("/cgi-bin/upload.cgi")
        async def upload() -> Reply:
            rec = self.last
            sess = self.sessions.get(rec.cookies.get("xfss", ""))
            if sess is None or rec.form.get("sess_id") != sess:
                return redirect("/login.html")
            file = rec.files.get("file_0")
            if file is None or rec.form.get("tos") != "1":
                return '<html><div class="err">No file or terms not accepted</div></html>', 200
            fld_id = rec.form.get("fld_id", "0")
            if fld_id != "0":  # 0: no folder, as the upload form's select sends it
                if fld_id not in self.folders:
                    return '<html><div class="err">No such folder</div></html>', 200
                self.folders[fld_id]["images"].append(file.filename)
            code = content_id(file.data)
            self.files[code] = file.filename
            # XFileSharing's hand-over to op=upload_result (a form the browser submits)
            return (
                "<html><body><form name='F1' action='https://vipr.im/' method='POST'>"
                f"<textarea name='op'>upload_result</textarea><textarea name='fn'>{code}"
                "</textarea><textarea name='st'>OK</textarea></form>"
                "<script>document.forms['F1'].submit();</script></body></html>",
                200,
            )

    @staticmethod
    def links(code: str, filename: str = "") -> tuple[str, str]:
        """The image and thumbnail links the ``upload_result`` page gives a file code."""
        return f"https://vipr.im/i/{code}/{filename}", f"https://vipr.im/th/{code}/{filename}"


class FakeTurbo(FakeHost):
    """TurboImageHost: the upload endpoint is only named in the home page's JavaScript.

    ``POST /upload_html5.tu`` takes ``qqfile``, ``upload_id`` (picked by the client),
    ``thumb_size``, ``imcontent`` and, for a gallery, ``galleryAN=1`` and ``galleryN``; it
    answers ``{"success": true, "newUrl": result page}``. ``GET
    /html5_upload_result.tu?upload_id=ID`` lists every image uploaded with that id as
    ``<div id="im_N" title="NAME"><a href="PAGE" class="thumbUrl"
    style="background-image:url('THUMB')">`` plus the BBCode (``input#imgCodeIPF`` for one
    image, ``textarea#imgCodeURF`` for more) and, for a gallery, ``input#imgCodeGG`` holding
    its ``/album/ID`` link (twwat/bbdrop ``src/network/turbo_image_host_client.py``). The
    exact value of ``imgCodeGG`` is not shown by the sources: here it is the bare link.
    ``uploads``: upload_id → ``{"gallery", "album", "images": [(filename, ident)]}``."""

    name = "turbo"

    def __init__(self) -> None:
        self.uploads: dict[str, dict[str, Any]] = {}
        self._albums = itertools.count(7001)
        super().__init__()

    @staticmethod
    def links(ident: str, filename: str) -> tuple[str, str]:
        """The image page and thumbnail links of an uploaded file."""
        return (
            f"https://www.turboimagehost.com/p/{ident}/{filename}.html",
            f"https://s8d8.turboimg.net/t1/{ident}_{filename}",
        )

    def album_url(self, upload_id: str) -> str:
        """The gallery link shown on the result page of a gallery's ``upload_id``."""
        found = self.uploads[upload_id]
        return f"https://www.turboimagehost.com/album/{found['album']}/" + found["gallery"].replace(
            " ", "_"
        )

    def routes(self) -> None:
        @self.app.get("/")
        async def home() -> tuple[str, int]:
            return (
                "<html><head><script>\nvar uploader = new qq.FineUploader({\n"
                "  request: {\n"
                f"    endpoint: '{self.base_url}/upload_html5.tu',\n"
                "    inputName: 'qqfile'\n  }\n});\n</script></head><body></body></html>",
                200,
            )

        @self.app.post("/upload_html5.tu")
        async def upload() -> tuple[dict[str, Any], int]:
            rec = self.last
            file = rec.files.get("qqfile")
            upload_id = rec.form.get("upload_id", "")
            if file is None or not upload_id:
                return _json_error(400, success=False, error="qqfile and upload_id required")
            gallery = rec.form.get("galleryN") if rec.form.get("galleryAN") == "1" else None
            found = self.uploads.setdefault(
                upload_id, {"gallery": gallery, "album": None, "images": []}
            )
            if gallery and found["album"] is None:
                found["album"] = str(next(self._albums))
            found["images"].append((file.filename, content_id(file.data)))
            return {
                "success": True,
                "newUrl": f"{self.base_url}/html5_upload_result.tu?upload_id={upload_id}",
            }, 200

        @self.app.get("/html5_upload_result.tu")
        async def result() -> tuple[str, int]:
            upload_id = self.last.query.get("upload_id", "")
            found = self.uploads.get(upload_id)
            if found is None:
                return "<html><body>No images</body></html>", 200
            divs, codes = [], []
            for n, (filename, ident) in enumerate(found["images"]):
                page, thumb = self.links(ident, filename)
                name = html.escape(filename)
                divs.append(
                    f'<div id="im_{n}" title="{name}"><a href="{page}" class="thumbUrl"'
                    f' style="background-image:url(\'{thumb}\')" target="_blank"></a></div>'
                )
                codes.append(f"[URL={page}][IMG]{thumb}[/IMG][/URL]")
            if len(codes) == 1:
                code = f'<input type="text" id="imgCodeIPF" value="{codes[0]}">'
            else:
                code = '<textarea id="imgCodeURF">' + "\n".join(codes) + "</textarea>"
            album = ""
            if found["album"] is not None:
                album = f'<input type="text" id="imgCodeGG" value="{self.album_url(upload_id)}">'
            return "<html><body>" + "".join(divs) + code + album + "</body></html>", 200


class FakeImageBam(FakeHost):
    """ImageBam: four-step Laravel-style login with CSRF tokens, JSON upload reply.

    Upload sessions take ``thumbnail_size`` (1-4), ``content_type`` (``sfw``/``nsfw``) and
    ``comments_enabled``; ``gallery=true`` with an empty ``gallery_token`` and a
    ``gallery_title`` makes a gallery of that title, a ``gallery_token`` adds to an existing
    one; the reply is ``{"status", "data": upload token, "session": upload session id}``
    (conniecombs/ConniesUploader ``modules/plugins/imagebam.py`` 3.1.0 and the "FastPic
    Upload" userscript). ``GET /upload/complete?session=ID`` is the session's page, naming
    the gallery in ``a#gallery-name`` (its link: ``/gallery/ID``, as gallery-dl's imagebam
    extractor reads it). An upload is answered ``{"success": URL of that page}``, and the
    page holds one text input per image of the session with its BBCode
    ``[URL=https://www.imagebam.com/view/ID][IMG]https://thumbs4.imagebam.com/…_t.jpeg[/IMG][/URL]``,
    in upload order (the userscript's ``uploadToImageBam``; the order is UNVERIFIED, see
    docs/recipes.md). Validation messages are the fake's own wording."""

    name = "imagebam"

    def __init__(self, email: str, password: str) -> None:
        self.email = email
        self.password = password
        # session cookie → {"token": csrf token, "user": bool, "upload": the newest upload
        # token of a session without a gallery}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.upload_tokens: dict[str, str | None] = {}
        """upload token → the gallery its files go to (``None``: no gallery)."""
        self.upload_sessions: dict[str, str | None] = {}
        """upload session id → its gallery (``None``: no gallery)."""
        self.galleries: dict[str, dict[str, Any]] = {}
        """gallery id → ``{"title", "images", "token"}`` (``token``: the gallery_token that
        adds uploads to it later)."""
        self.session_forms: list[dict[str, str]] = []
        """The form of every accepted upload-session request, in order."""
        self.token_sessions: dict[str, str] = {}
        """upload token → its upload session id."""
        self.session_images: dict[str, list[str]] = {}
        """upload session id → the ids of its images, in upload order."""
        super().__init__()

    @staticmethod
    def links(ident: str) -> tuple[str, str]:
        """The view page and thumbnail links of an uploaded image."""
        return (
            f"https://www.imagebam.com/view/{ident}",
            f"https://thumbs4.imagebam.com/{ident[:2]}/{ident[2:4]}/{ident}_t.jpeg",
        )

    def _session(self) -> tuple[str, dict[str, Any]]:
        key = self.last.cookies.get("imagebam_session", "")
        found = self.sessions.get(key)
        if found is None:
            key = secrets.token_hex(8)
            found = {"token": secrets.token_hex(8), "user": False, "upload": None}
            self.sessions[key] = found
        return key, found

    def expire_sessions(self) -> None:
        """Forget every session (the next request is answered 401)."""
        self.sessions.clear()

    def routes(self) -> None:
        @self.app.get("/auth/login")
        async def login_page() -> Response:
            key, sess = self._session()
            reply = Response(
                '<html><form method="POST" action="/auth/login">'
                f'<input type="hidden" name="_token" value="{sess["token"]}">'
                '<input name="email"><input name="password" type="password"></form></html>'
            )
            reply.set_cookie("imagebam_session", key, httponly=True)
            return reply

        @self.app.post("/auth/login")
        async def login() -> Reply:
            key, sess = self._session()
            form = self.last.form
            if form.get("_token") != sess["token"]:
                return "page expired", 419
            if form.get("email") != self.email or form.get("password") != self.password:
                return "These credentials do not match our records.", 403
            sess["user"] = True
            sess["token"] = secrets.token_hex(8)
            reply = redirect("/")
            reply.set_cookie("imagebam_session", key, httponly=True)
            return reply

        @self.app.get("/")
        async def home() -> Reply:
            _key, sess = self._session()
            if not sess["user"]:
                return redirect("/auth/login")
            return (
                f'<html><head><meta name="csrf-token" content="{sess["token"]}"></head>'
                "<body>upload</body></html>",
                200,
            )

        @self.app.post("/upload/session")
        async def upload_session() -> tuple[dict[str, Any], int] | tuple[str, int]:
            _key, sess = self._session()
            if not sess["user"]:
                return _json_error(401, status="error", message="Unauthenticated.")
            if self.last.headers.get("x-csrf-token") != sess["token"]:
                return "CSRF token mismatch", 419
            form = self.last.form
            if form.get("thumbnail_size") not in ("1", "2", "3", "4"):
                return _json_error(422, status="error", message="invalid thumbnail_size")
            if form.get("content_type") not in ("sfw", "nsfw"):
                return _json_error(422, status="error", message="invalid content_type")
            gallery: str | None = None
            if form.get("gallery") == "true":
                token = form.get("gallery_token", "")
                if token:
                    found = [g for g, v in self.galleries.items() if v["token"] == token]
                    if not found:
                        return _json_error(422, status="error", message="unknown gallery")
                    gallery = found[0]
                elif not form.get("gallery_title", "").strip():
                    return _json_error(422, status="error", message="gallery title required")
                else:
                    gallery = secrets.token_hex(5)
                    self.galleries[gallery] = {
                        "title": form["gallery_title"],
                        "images": [],
                        "token": secrets.token_hex(4),
                    }
            self.session_forms.append(dict(form))
            upload_token = secrets.token_hex(8)
            session_id = secrets.token_hex(6)
            if gallery is None:
                sess["upload"] = upload_token
            self.upload_tokens[upload_token] = gallery
            self.upload_sessions[session_id] = gallery
            self.token_sessions[upload_token] = session_id
            self.session_images[session_id] = []
            return {"status": "success", "data": upload_token, "session": session_id}, 200

        @self.app.get("/upload/complete")
        async def complete() -> tuple[str, int]:
            session_id = self.last.query.get("session", "")
            if session_id not in self.upload_sessions:
                return "<html>upload session not found</html>", 404
            gallery = self.upload_sessions[session_id]
            link = ""
            if gallery is not None:
                title = html.escape(self.galleries[gallery]["title"])
                link = (
                    f'<a id="gallery-name" href="https://www.imagebam.com/gallery/{gallery}">'
                    f"{title}</a>"
                )
            codes = "".join(
                '<div class="image-code"><input type="text" class="form-control" readonly'
                ' value="[URL={}][IMG]{}[/IMG][/URL]"></div>'.format(*self.links(ident))
                for ident in self.session_images[session_id]
            )
            return f"<html><body>{link}{codes}</body></html>", 200

        @self.app.post("/upload")
        async def upload() -> tuple[dict[str, Any], int] | tuple[str, int]:
            _key, sess = self._session()
            rec = self.last
            if not sess["user"]:
                return _json_error(401, status="error", message="Unauthenticated.")
            if (
                rec.headers.get("x-csrf-token") != sess["token"]
                or rec.form.get("_token") != sess["token"]
            ):
                return "CSRF token mismatch", 419
            token = rec.form.get("data", "")
            if token not in self.upload_tokens:
                return _json_error(422, status="error", message="invalid upload session")
            file = rec.files.get("files[0]")
            if file is None:
                return _json_error(422, status="error", message="no file")
            gallery = self.upload_tokens[token]
            if gallery is not None:
                self.galleries[gallery]["images"].append(file.filename)
            session_id = self.token_sessions[token]
            self.session_images[session_id].append(content_id(file.data))
            return {"success": f"{self.base_url}/upload/complete?session={session_id}"}, 200


class FakeThumbHost(FakeHost):
    """A host taking the image (``image``) and a thumbnail made by the client (``thumb``):
    ``POST /upload`` → ``{"ok": true, "url", "thumb"}``; the thumbnails it received are kept
    in ``thumbs`` (file name → bytes)."""

    name = "thumbhost"

    def __init__(self) -> None:
        self.thumbs: dict[str, UploadedFile] = {}
        super().__init__()

    def routes(self) -> None:
        @self.app.post("/upload")
        async def upload() -> tuple[dict[str, Any], int]:
            rec = self.last
            image, thumb = rec.files.get("image"), rec.files.get("thumb")
            if image is None or thumb is None:
                return _json_error(400, ok=False, error="image and thumb are required")
            ident = content_id(image.data)
            self.thumbs[image.filename] = thumb
            return {
                "ok": True,
                "url": f"https://thumbs.example/i/{ident}",
                "thumb": f"https://thumbs.example/t/{ident}",
            }, 200


@asynccontextmanager
async def running(host: FakeHost) -> AsyncIterator[FakeHost]:
    """Serve ``host`` on 127.0.0.1 (a free port) until the block ends; sets ``base_url``."""
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.loglevel = "WARNING"
    config.graceful_timeout = 1.0
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, host.app, config, shutdown_trigger=stop.wait))
        host.base_url = str(binds[0]).rstrip("/")
        try:
            yield host
        finally:
            stop.set()
            nursery.cancel_scope.deadline = trio.current_time() + 5
