"""User output templates: Jinja2 files in a sandbox, next to the built-in formats."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio

from fakes.imagehost_setup import services_config
from fakes.imagehost_stack import upload_stack
from fakes.imagehosts import FakeImx, FakePixhost, content_id
from hathd.errors import ConfigError
from hathd.recipes.user_templates import OutputTemplateError, UserTemplates, batch_context

GALLERY_PAGE = """\
{# a gallery page: title, then one thumbnail per image #}
<h1>{{ gallery.name if gallery else batch }}</h1>
{% for item in items -%}
<a href="{{ item.url }}"><img src="{{ item.thumb }}" alt="{{ item.filename }}"></a>
{% endfor %}"""


def context(**gallery: str) -> dict[str, object]:
    items = [
        {"url": "https://h.example/i/1", "thumb": "", "filename": "a<b>.jpg", "index": 0},
        {"url": "javascript:alert(1)", "filename": "evil.jpg", "index": 1},
    ]
    return batch_context("b1", "imx.to", items, gallery or None)


def test_directory_templates_render_over_the_batch(tmp_path: Path) -> None:
    (tmp_path / "page.html.j2").write_text(GALLERY_PAGE)
    (tmp_path / "names.j2").write_text("{{ items | map(attribute='filename') | join(', ') }}")
    (tmp_path / "notes.txt").write_text("not a template")
    user = UserTemplates.load(str(tmp_path), {})
    assert sorted(user.formats) == ["names", "page"]
    page = user.render("page", context(name="Trip <1>", gallery_url="https://h.example/g/1"))
    # autoescaped (an .html.j2 file); the javascript: link never reaches the output
    assert page.splitlines() == [
        "<h1>Trip &lt;1&gt;</h1>",
        '<a href="https://h.example/i/1"><img src="https://h.example/i/1" alt="a&lt;b&gt;.jpg">'
        "</a>",
    ]
    assert user.render("names", context()) == "a<b>.jpg"


def test_a_template_file_named_in_the_config(tmp_path: Path) -> None:
    path = tmp_path / "anywhere.txt"
    path.write_text("{% for i in items %}{{ i.index }}={{ i.url }}{% endfor %}")
    failing = tmp_path / "other.tpl"
    failing.write_text("one\ntwo\n{{ items[0].url.nope }}")
    user = UserTemplates.load(None, {"plain": str(path), "failing": str(failing)})
    assert user.render("plain", context()) == "0=https://h.example/i/1"
    with pytest.raises(OutputTemplateError, match=r"^template other\.tpl line 3: Undefined"):
        user.render("failing", context())


def test_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken.j2").write_text("line one\n{% for item in items %}\n{{ item.url }\n")
    with pytest.raises(ConfigError) as caught:
        UserTemplates.load(str(tmp_path), {})
    [(key, message)] = caught.value.problems
    assert key == "recipes.templates_dir"
    assert message.startswith("broken.j2 line 3: ")


def test_builtin_formats_are_kept(tmp_path: Path) -> None:
    (tmp_path / "bbcode.j2").write_text("mine")
    (tmp_path / "mine.j2").write_text("mine")
    with pytest.raises(ConfigError, match="format 'bbcode' is already defined"):
        UserTemplates.load(str(tmp_path), {})
    with pytest.raises(ConfigError, match="format 'mine' is already defined"):
        UserTemplates.load(str(tmp_path / "none"), {"mine": str(tmp_path / "mine.j2")}, ["mine"])


def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot list"):
        UserTemplates.load(str(tmp_path / "nope"), {})


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("{{ items.__class__.__mro__ }}", "SecurityError"),
        ("{{ ''.__class__.__base__.__subclasses__() }}", "SecurityError"),
        ("{{ batch.__class__ }}", "SecurityError"),
        ("{{ lipsum.__globals__ }}", "SecurityError"),
        ("{{ items.append(1) }}", "SecurityError"),
        ("{{ gallery.update(name='x') }}", "SecurityError"),
        ("{% include '{secret}' %}", "TemplateNotFound"),
        ("{% import '../{name}' as s %}", "TemplateNotFound"),
        ("{{ config }}", "UndefinedError"),
        ("{{ self._TemplateReference__context }}", "SecurityError"),
    ],
)
def test_a_template_reaches_nothing_it_is_not_given(tmp_path: Path, source: str, kind: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the-secret-content")
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "evil.j2").write_text(
        "first line\n" + source.replace("{secret}", str(secret)).replace("{name}", secret.name)
    )
    user = UserTemplates.load(str(folder), {})
    with pytest.raises(OutputTemplateError) as caught:
        user.render("evil", context(name="g", gallery_url="https://h.example/g"))
    message = str(caught.value)
    assert message.startswith(f"template evil.j2 line 2: {kind}"), message
    assert "the-secret-content" not in message


def test_runtime_error_names_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "odd.j2").write_text("a\nb\n{{ items[0].nope }}\n")
    user = UserTemplates.load(str(tmp_path), {})
    with pytest.raises(OutputTemplateError, match=r"^template odd\.j2 line 3: UndefinedError"):
        user.render("odd", context())


async def test_user_templates_in_the_summary_and_a_failing_one_is_reported(
    tmp_path: Path, imx: FakeImx, pixhost: FakePixhost, images: list[Path]
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "page.html.j2").write_text(GALLERY_PAGE)
    (folder / "broken.j2").write_text("ok\n{{ gallery.nope }}")
    config = attrs.evolve(
        services_config(imx_to=imx.base_url, pixhost_to=pixhost.base_url),
        templates_dir=str(folder),
    )
    async with upload_stack(config) as stack:
        sub = await stack.uploads.submit([str(p) for p in images[:2]], "pixhost.to", gallery="Trip")
        with trio.fail_after(60):
            while True:
                summary = await stack.uploads.summary(sub.batch)
                assert summary is not None
                if summary["state"] != "active":
                    break
                await trio.sleep(0.05)
    assert summary["state"] == "done"
    ids = [content_id(p.read_bytes()) for p in images[:2]]
    page = summary["output"]["page"].splitlines()
    assert page[0] == "<h1>Trip</h1>"
    assert [line.split('"')[1] for line in page[1:]] == [
        f"https://pixhost.to/show/{i}/{p.name}" for i, p in zip(ids, images, strict=False)
    ]
    assert summary["output"]["broken"] == ""
    assert summary["output_errors"] == {
        "broken": "template broken.j2 line 2: UndefinedError: 'dict object' has no attribute 'nope'"
    }
    # the built-in formats are still there
    assert {"bbcode", "html", "markdown", "links"} <= set(summary["output"])
