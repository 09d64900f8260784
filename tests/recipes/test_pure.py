"""The sans-IO parts: templates, extractors, retry decisions, token bucket, multipart, output."""

from __future__ import annotations

import os
import random
import tempfile
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from hathd.recipes.extract import (
    ExtractionError,
    ExtractorSyntaxError,
    ResponseView,
    parse_extractor,
    run_extractor,
)
from hathd.recipes.model import RetryPolicy
from hathd.recipes.multipart import FilePart, FileSegment, TextPart, encode, utf8
from hathd.recipes.output import render_output
from hathd.recipes.retry import Verdict, backoff, classify
from hathd.recipes.template import TemplateError, placeholders, render
from hathd.recipes.uploads import UploadRequestError, expand_paths
from hathd.tokenbucket import TokenBucket

# -- templates -------------------------------------------------------------------------------


def test_render_substitutes_known_names_and_literal_braces() -> None:
    assert render("{a}-{{b}}-{a}", {"a": "x"}) == "x-{b}-x"
    assert placeholders("{a}{{c}}{b}") == ["a", "b"]


@pytest.mark.parametrize(
    "template", ["{a.__class__}", "{a[0]}", "{a!r}", "{a:>10}", "{", "}", "{ a}", "{0}"]
)
def test_render_refuses_anything_but_plain_names(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, {"a": "x", "0": "y"})


def test_render_lists_every_unknown_name() -> None:
    with pytest.raises(TemplateError) as caught:
        render("{x}{y}{x}", {})
    assert caught.value.names == ("x", "y")


@given(st.text(alphabet=st.characters(blacklist_characters="{}")), st.text())
def test_render_is_identity_without_braces_and_values_are_not_reparsed(
    text: str, value: str
) -> None:
    assert render(text, {}) == text
    assert render("{v}", {"v": value}) == value


# -- extractors ------------------------------------------------------------------------------

PAGE = b"""<html><head><meta name="csrf-token" content="T2"></head><body>
<input type="hidden" name="sess_id" value="abc123"><img class="t" src="/t.jpg">
<a class="d" href="/del/1">delete</a><p class="msg"> Hello  </p>
<script>var u = { endpoint: 'https://s1.example/up?id=9', other: 1 };</script></body></html>"""


def view(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> ResponseView:
    return ResponseView(status, headers or {}, "https://h.example/final", body)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("css:input[name=sess_id]", "abc123"),
        ("css:img.t", "/t.jpg"),
        ("css:a.d", "/del/1"),
        ("css:p.msg", "Hello"),
        ("css:meta[name=csrf-token]::attr(content)", "T2"),
        ("regex:endpoint:\\s*'([^']+)'", "https://s1.example/up?id=9"),
        ("final_url", "https://h.example/final"),
        ("status", "200"),
    ],
)
def test_html_extractors(spec: str, expected: str) -> None:
    assert run_extractor("v", parse_extractor(spec), view(PAGE))["v"] == expected


def test_regex_named_groups_all_become_values() -> None:
    ex = parse_extractor(r"regex:id=(?P<id>\d+)&key=(?P<key>\w+)")
    assert run_extractor("id", ex, view(b"x?id=42&key=k9")) == {"id": "42", "key": "k9"}


def test_json_extractors_and_dot_indexes() -> None:
    body = b'{"status": "success", "ok": true, "files": [{"url": "u1", "n": 3}], "d": {"a": null}}'
    v = view(body)
    assert run_extractor("x", parse_extractor("json:files.0.url"), v)["x"] == "u1"
    assert run_extractor("x", parse_extractor("json:files[0].n"), v)["x"] == "3"
    assert run_extractor("x", parse_extractor("json:ok"), v)["x"] == "true"
    assert run_extractor("x", parse_extractor("json:$.status"), v)["x"] == "success"
    with pytest.raises(ExtractionError, match="could not extract 'x'"):
        run_extractor("x", parse_extractor("json:d.a"), v)
    with pytest.raises(ExtractionError):
        run_extractor("x", parse_extractor("json:status"), view(b"<html>not json"))


def test_header_extractor_is_case_insensitive() -> None:
    v = view(b"", headers={"Location": "/next"})
    assert run_extractor("x", parse_extractor("header:location"), v)["x"] == "/next"


@pytest.mark.parametrize("spec", ["xpath://a", "json:", "json:a[", "css:a[[", "regex:(", "nope"])
def test_bad_extractors(spec: str) -> None:
    with pytest.raises(ExtractorSyntaxError):
        parse_extractor(spec)


# -- retry -----------------------------------------------------------------------------------


def test_backoff_doubles_caps_and_jitters() -> None:
    policy = RetryPolicy(initial_backoff=1.0, multiplier=2.0, max_backoff=30.0, jitter=0.0)
    assert [backoff(policy, n, random.Random(1)) for n in range(1, 7)] == [1, 2, 4, 8, 16, 30]
    jittery = RetryPolicy(jitter=0.2)
    waits = [backoff(jittery, 2, random.Random(seed)) for seed in range(200)]
    assert all(1.6 <= w <= 2.4 for w in waits)
    assert max(waits) - min(waits) > 0.5


def test_classify() -> None:
    p = RetryPolicy()
    assert classify(200, policy=p) is Verdict.OK
    assert classify(302, policy=p) is Verdict.OK
    assert classify(302, policy=p, expect=[200]) is Verdict.FAIL
    assert classify(429, policy=p) is Verdict.RETRY
    assert classify(503, policy=p) is Verdict.RETRY
    assert classify(501, policy=p) is Verdict.FAIL
    assert classify(403, policy=p) is Verdict.FAIL
    assert classify(401, policy=p, relogin_status=[401]) is Verdict.RELOGIN
    assert classify(200, policy=p, final_url_is_login=True) is Verdict.RELOGIN


# -- token bucket ----------------------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=5, now=100.0)
    assert [bucket.reserve(100.0) for _ in range(5)] == [0.0] * 5
    assert [bucket.reserve(100.0) for _ in range(3)] == [0.5, 1.0, 1.5]
    # after 10 s the bucket is full again, never above the burst
    assert [bucket.reserve(110.0) for _ in range(6)] == [0.0] * 5 + [0.5]


@given(st.floats(0.1, 100), st.integers(1, 20), st.integers(1, 200))
def test_token_bucket_never_exceeds_rate(rate: float, burst: int, n: int) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    sends = sorted(bucket.reserve(0.0) for _ in range(n))
    # by time t at most burst + rate·t requests have gone
    for i, t in enumerate(sends):
        assert i + 1 <= burst + rate * t + 1e-6


def test_unlimited_bucket() -> None:
    bucket = TokenBucket(rate=0.0, burst=1, now=0.0)
    assert {bucket.reserve(0.0) for _ in range(100)} == {0.0}


# -- multipart -------------------------------------------------------------------------------


def test_multipart_encoding_parses_back(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10
    path = tmp_path / "a.bin"
    path.write_bytes(data)
    parts: list[TextPart | FilePart] = [
        TextPart("sess_id", "abc"),
        FilePart('fi"le\r\n', path, len(data), 'na"me.jpg', "image/jpeg"),
        TextPart("tos", "1"),
    ]
    segments, length = encode(parts, "BOUNDARY42")
    body = b"".join(s if isinstance(s, bytes) else path.read_bytes() for s in segments)
    assert len(body) == length
    assert sum(isinstance(s, FileSegment) for s in segments) == 1
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: multipart/form-data; boundary=BOUNDARY42\r\n\r\n" + body
    )
    got = [
        (
            p.get_param("name", header="content-disposition"),
            p.get_filename(),
            p.get_payload(decode=True),
        )
        for p in message.iter_parts()
    ]
    assert got == [
        ("sess_id", None, b"abc"),
        ("fi%22le%0D%0A", "na%22me.jpg", data),
        ("tos", None, b"1"),
    ]


def test_multipart_file_name_that_is_not_utf8_never_fails(tmp_path: Path) -> None:
    """A real file whose name has the byte 0xff (Python holds it as a lone surrogate): the
    encoder sends U+FFFD in its place instead of raising UnicodeEncodeError."""
    raw = os.path.join(os.fsencode(tmp_path), b"bad\xffname.jpg")
    with open(raw, "wb") as f:
        f.write(b"jpeg")
    path = Path(os.fsdecode(raw))
    assert path.exists()
    segments, length = encode(
        [
            TextPart("title", path.stem),
            FilePart("file", path, 4, path.name, "image/jpeg"),
        ],
        "BOUNDARY42",
    )
    body = b"".join(s if isinstance(s, bytes) else path.read_bytes() for s in segments)
    assert len(body) == length
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: multipart/form-data; boundary=BOUNDARY42\r\n\r\n" + body
    )
    title, image = message.iter_parts()
    assert title.get_payload(decode=True) == "bad\ufffdname".encode()
    assert image.get_filename() == "bad\ufffdname.jpg"
    assert image.get_payload(decode=True) == b"jpeg"


def test_lone_surrogates_from_json_are_refused_or_replaced_never_raised() -> None:
    """A JSON body may carry ``\\ud800`` (valid JSON, not encodable text): a path with it is
    a clear UploadRequestError naming it, and a text field sends U+FFFD."""
    with pytest.raises(UploadRequestError, match=r"a\\ud800b\.jpg': the name is not valid"):
        expand_paths(["/tmp/a\ud800b.jpg"], [])
    assert utf8("x\ud800y") == "x\ufffdy".encode()
    segments, _ = encode([TextPart("gallery", "g\ud800")], "B")
    assert "g\ufffd".encode() in b"".join(s for s in segments if isinstance(s, bytes))


# -- output ----------------------------------------------------------------------------------


def test_output_formats_escape_and_fall_back_to_url() -> None:
    items = [
        {"url": "https://h/1", "thumb": "https://h/t1", "filename": "a.jpg", "index": "0"},
        {"url": "https://h/2?a=1&b=<2>", "thumb": "", "filename": 'b"].jpg', "index": "1"},
    ]
    assert render_output("bbcode", items) == (
        "[url=https://h/1][img]https://h/t1[/img][/url]\n"
        "[url=https://h/2?a=1&b=<2>][img]https://h/2?a=1&b=<2>[/img][/url]"
    )
    assert render_output("html", items).splitlines()[1] == (
        '<a href="https://h/2?a=1&amp;b=&lt;2&gt;"><img src="https://h/2?a=1&amp;b=&lt;2&gt;"'
        ' alt="b&quot;].jpg"></a>'
    )
    assert render_output("markdown", items[:1]) == "[![a.jpg](https://h/t1)](https://h/1)"
    assert render_output("links", items) == "https://h/1\nhttps://h/2?a=1&b=<2>"
    assert render_output("mine", items[:1], {"mine": "{index}:{filename}"}) == "0:a.jpg"
    with pytest.raises(KeyError):
        render_output("nope", items)


def test_output_uses_only_http_links() -> None:
    """Links are a remote host's words: only http(s) URLs reach the HTML/BBCode/Markdown."""
    items = [
        {"url": "javascript:alert(1)", "filename": "x.jpg", "index": "0"},
        {"url": " https://h/1", "filename": "y.jpg", "index": "1"},  # browsers strip the space
        {
            "url": "HTTPS://h/2",
            "thumb": "data:text/html,<script>",
            "delete": "vbscript:x",
            "filename": "z.jpg",
            "index": "2",
        },
    ]
    assert (
        render_output("html", items)
        == '<a href="HTTPS://h/2"><img src="HTTPS://h/2" alt="z.jpg"></a>'
    )
    assert render_output("bbcode", items) == "[url=HTTPS://h/2][img]HTTPS://h/2[/img][/url]"
    assert render_output("mine", items, {"mine": "{url} {delete}"}) == "HTTPS://h/2 "


async def test_limiter_waits_for_the_slowest_bucket(autojump_clock: object) -> None:
    from hathd.recipes.ratelimit import Limiter, new_bucket

    service = new_bucket(2.0, 5)
    shared = new_bucket(4.0, 2)
    limiter = Limiter([service, shared])
    start = trio.current_time()
    sent = []
    for _ in range(9):
        await limiter.acquire()
        sent.append(trio.current_time() - start)
    # the shared bucket (burst 2, 4/s) paces the first requests, the service bucket
    # (burst 5, 2/s) the later ones
    assert sent[:2] == [0.0, 0.0]
    assert sent[2] == pytest.approx(0.25)
    assert sent[-1] == pytest.approx(2.0)
    assert limiter.statistics().requests == 9


@given(st.sampled_from(["json:", "css:", "regex:", "header:", ""]), st.text(max_size=30))
def test_any_extractor_text_parses_or_fails_cleanly(kind: str, arg: str) -> None:
    try:
        ex = parse_extractor(kind + arg)
    except ExtractorSyntaxError:
        return
    # a parsed extractor never crashes on a reply; it finds a value or raises ExtractionError
    for body in (PAGE, b'{"a": [1, {"b": "c"}], "d": {"e": null}}'):
        try:
            run_extractor("v", ex, view(body))
        except ExtractionError:
            pass


@given(
    st.lists(
        st.tuples(
            # names without the characters the form-data encoding escapes, nor a backslash
            # (browsers send it raw; the email parser used as the oracle treats it as an escape)
            st.text(
                alphabet=st.characters(codec="utf-8", exclude_characters='"\r\n%\\'), min_size=1
            ),
            st.text(),
        ),
        max_size=5,
    ),
    st.binary(max_size=2000),
)
def test_multipart_round_trip(fields: list[tuple[str, str]], data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.bin"
        path.write_bytes(data)
        parts: list[TextPart | FilePart] = [TextPart(n, v) for n, v in fields]
        parts.append(FilePart("file", path, len(data), "f.bin", "application/octet-stream"))
        segments, length = encode(parts, "b0undary-x")
        body = b"".join(s if isinstance(s, bytes) else data for s in segments)
    assert len(body) == length
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: multipart/form-data; boundary=b0undary-x\r\n\r\n" + body
    )
    got = list(message.iter_parts())
    assert len(got) == len(fields) + 1
    for part, (name, value) in zip(got, fields, strict=False):
        assert part.get_param("name", header="content-disposition") == name
        assert part.get_payload(decode=True) == value.encode()
    assert got[-1].get_payload(decode=True) == data


def test_result_step_extractors_bind_values_escaped_for_their_kind() -> None:
    from hathd.recipes.extract import ResponseView, bind_extractor, parse_extractor, run_extractor

    page = ResponseView(
        200,
        {},
        "https://h.example/r",
        b'<div title="a(1)+.jpg"><a href="https://h.example/1"></a></div>'
        b'<div title="a1.jpg"><a href="https://h.example/2"></a></div>'
        b'<div title="it\'s.jpg"><a href="https://h.example/3"></a></div>',
    )
    regex = parse_extractor('regex:title="{filename}"><a href="([^"]+)"')
    css = parse_extractor("css:div[title='{filename}'] a::attr(href)")
    for name, link in (("a(1)+.jpg", "1"), ("a1.jpg", "2"), ("it's.jpg", "3")):
        for ex in (regex, css):
            bound = bind_extractor(ex, {"filename": name})
            got = run_extractor("link", bound, page)["link"]
            assert got == f"https://h.example/{link}", (ex.kind, name)
    # the pattern's own characters are not the value's: "a1.jpg" does not match "a(1)+.jpg"
    lone = ResponseView(200, {}, "", b'<div title="a(1)+.jpg"><a href="x"></a></div>')
    with pytest.raises(LookupError):
        run_extractor("link", bind_extractor(regex, {"filename": "a1.jpg"}), lone)
    literal = parse_extractor(r"regex:\d{{2}}-{n}")
    assert bind_extractor(literal, {"n": "x"}).arg == r"\d{2}-x"
