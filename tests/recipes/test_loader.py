"""Recipe validation: shapes, key paths, placeholders, built-ins, directory and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from hathd.errors import ConfigError
from hathd.recipes.config import RecipesConfig, ServiceConfig
from hathd.recipes.loader import (
    builtin_recipes,
    configured_recipes,
    load_recipes,
    parse_recipe_text,
)
from hathd.recipes.model import ForumRecipe, Recipe

GOOD = """
id = "example"
base_url = "https://img.example"
[[credentials]]
name = "token"
[[login]]
name = "start"
url = "/login"
extract = { csrf = "css:input[name=csrf]" }
[[login.then]]
name = "submit"
method = "POST"
url = "/login"
form = { csrf = "{csrf}", token = "{token}" }
[[login.then.then]]
name = "home"
url = "/"
extract = { sid = "regex:sid=(?P<sid>\\\\w+)" }
[upload]
url = "/up"
[upload.fields.f]
type = "file"
[upload.fields.s]
type = "value"
value = "sid"
[upload.response]
url = "{link}"
extract = { link = "json:files.0.url" }
"""


def problems_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_recipe_text(text, source="x.toml")
    return caught.value.problems


def test_good_recipe_parses_with_nested_chain() -> None:
    recipe = parse_recipe_text(GOOD)
    assert recipe.login[0].then[0].then[0].name == "home"
    assert recipe.login[0].then[0].form == {"csrf": "{csrf}", "token": "{token}"}
    assert recipe.upload.response.extract["link"].arg == "files[0].url"
    assert recipe.limits.rate == 2.0
    assert recipe.retry.retryable_codes == [408, 429, 500, 502, 503, 504]
    assert recipe.secrets == frozenset({"token"})


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        ('type = "file"', 'type = "files"', "x.toml: upload.fields.f.type", "must be one of"),
        (
            'name = "home"',
            'name = "home"\nbogus = 1',
            "x.toml: login[0].then[0].then[0].bogus",
            "unknown key",
        ),
        (
            '"css:input[name=csrf]"',
            '"css:input[["',
            "x.toml: login[0].extract.csrf",
            "bad CSS selector",
        ),
        (
            '"json:files.0.url"',
            '"jsn:files"',
            "x.toml: upload.response.extract.link",
            "must start with one of",
        ),
        (
            '"regex:sid=(?P<sid>\\\\w+)"',
            '"regex:sid=("',
            "x.toml: login[0].then[0].then[0].extract.sid",
            "bad regular expression",
        ),
        (
            'url = "/up"',
            'url = "/up/{gallery}"',
            "x.toml: upload.url",
            "unknown placeholder {gallery}",
        ),
        (
            'token = "{token}"',
            'token = "{tokn}"',
            "x.toml: login[0].then[0].form.token",
            "unknown placeholder {tokn}",
        ),
        (
            'value = "sid"',
            'value = "sess"',
            "x.toml: upload.fields.s.value",
            "no step extracts a value named 'sess'",
        ),
        ('method = "POST"', 'method = "YEET"', "x.toml: login[0].then[0].method", "must be one of"),
        ('url = "{link}"', 'url = "{link"', "x.toml: upload.response.url", "stray '{'"),
        (
            '[upload.fields.f]\ntype = "file"',
            "",
            "x.toml: upload.fields",
            "exactly one field of type 'file'",
        ),
        (
            'extract = { link = "json:files.0.url" }',
            'extract = { link = "json:files.0.url" }\n[retry]\nretryable_codes = [999]',
            "x.toml: retry.retryable_codes",
            "999 is not an HTTP status code",
        ),
        (
            'extract = { link = "json:files.0.url" }',
            'extract = { link = "json:files.0.url" }\n[limits]\nrate = -1',
            "x.toml: limits.rate",
            "must be >= 0.0",
        ),
        (
            'extract = { link = "json:files.0.url" }',
            'extract = { link = "json:files.0.url" }\n[[gallery.create]]\nname = "c"\nurl = "/g"',
            "x.toml: gallery.create",
            "no step extracts 'gallery_id'",
        ),
        ('base_url = "https://img.example"', "", "x.toml: base_url", "must not be empty"),
        ('id = "example"', 'id = "ex*ample"', "x.toml: id", "start with a letter or digit"),
    ],
)
def test_malformed_recipe_is_rejected_with_key_path(
    old: str, new: str, path: str, message: str
) -> None:
    assert old in GOOD
    found = problems_of(GOOD.replace(old, new, 1))
    assert any(p == path and message in m for p, m in found), found


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace('type = "file"', 'type = "files"').replace(
        'method = "POST"', 'method = "YEET"'
    )
    paths = {p for p, _m in problems_of(text)}
    assert {"x.toml: upload.fields.f.type", "x.toml: login[0].then[0].method"} <= paths


def test_toml_syntax_error() -> None:
    found = problems_of("id = ")
    assert found[0][0] == "x.toml"
    assert "TOML syntax error" in found[0][1]


def test_builtins_cover_the_five_hosts_and_the_forum() -> None:
    recipes = builtin_recipes()
    hosts = sorted(k for k, r in recipes.items() if isinstance(r, Recipe))
    assert hosts == ["imagebam", "imx.to", "pixhost.to", "turboimagehost", "vipr.im"]
    forum = recipes["vbulletin"]
    assert isinstance(forum, ForumRecipe)
    assert (forum.limits.rate, forum.limits.burst, forum.limits.concurrency) == (1.0, 3, 1)
    assert forum.derive == {"password_md5": "md5:{password}"}
    bam = recipes["imagebam"]
    assert isinstance(bam, Recipe)
    depth, step = 1, bam.login[0]
    while step.then:
        depth, step = depth + 1, step.then[0]
    assert depth == 4
    assert step.headers["X-CSRF-TOKEN"] == "{csrf_token}"
    turbo, imx = recipes["turboimagehost"], recipes["imx.to"]
    assert isinstance(turbo, Recipe)
    assert isinstance(imx, Recipe)
    assert turbo.prepare[0].extract["endpoint"].kind == "regex"
    assert "sess_id" in recipes["vipr.im"].login[0].then[0].extract
    assert imx.upload.headers == {"X-API-KEY": "{api_key}"}


def test_directory_recipe_replaces_builtin_and_bad_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "imx.toml").write_text(
        GOOD.replace('id = "example"', 'id = "imx.to"'), encoding="utf-8"
    )
    recipes = load_recipes(tmp_path)
    assert recipes["imx.to"].base_url == "https://img.example"
    assert "vipr.im" in recipes
    (tmp_path / "broken.toml").write_text(GOOD.replace('type = "file"', 'type = "x"'))
    with pytest.raises(ConfigError) as caught:
        load_recipes(tmp_path)
    assert caught.value.problems[0][0] == "broken.toml: upload.fields.f.type"
    with pytest.raises(ConfigError, match=r"recipes\.directory"):
        load_recipes(tmp_path / "missing")


def test_service_overrides_and_unknown_services() -> None:
    config = RecipesConfig(
        services={
            "imx.to": ServiceConfig(
                base_url="http://127.0.0.1:1",
                options={"thumbnail_size": "3"},
                rate=0.5,
                burst=2,
                concurrency=3,
            ),
            "vipr.im": ServiceConfig(enabled=False),
        }
    )
    recipes = configured_recipes(config)
    imx = recipes["imx.to"]
    assert imx.base_url == "http://127.0.0.1:1"
    assert imx.options == {
        "thumbnail_size": "3",
        "web_url": "https://imx.to",
        "public_gallery": "1",
    }
    assert (imx.limits.rate, imx.limits.burst, imx.limits.concurrency) == (0.5, 2, 3)
    assert "vipr.im" not in recipes
    with pytest.raises(ConfigError, match=r'recipes\.services\."nope"'):
        configured_recipes(RecipesConfig(services={"nope": ServiceConfig()}))
    with pytest.raises(ConfigError, match=r"options\.colour"):
        configured_recipes(
            RecipesConfig(services={"imx.to": ServiceConfig(options={"colour": "red"})})
        )


def test_root_config_section_validates_with_key_paths() -> None:
    from hathd.config import structure

    cfg = structure({"recipes": {"services": {"imx.to": {"credentials": {"api_key": "k"}}}}})
    assert cfg.recipes.services["imx.to"].credentials == {"api_key": "k"}
    with pytest.raises(ConfigError) as caught:
        structure({"recipes": {"global_rate": -1, "services": {"imx.to": {"burst": 0}}}})
    text = str(caught.value)
    assert "recipes.global_rate" in text
    assert "burst" in text


RESULT = """
id = "result.example"
base_url = "https://img.example"
[upload]
url = "/up"
[upload.fields.f]
type = "file"
[upload.response]
extract = { page = "json:success" }
url = "{link}"
[[upload.result]]
name = "page"
url = "{page}"
extract = { link = "css:input#link" }
[gallery]
id = "{random_id}"
[[gallery.result]]
name = "gallery_page"
url = "/done?upload_id={gallery_id}"
extract = { gallery_url = "css:a#gallery::attr(href)" }
"""


def test_result_steps_feed_the_links_and_a_gallery_may_have_only_an_id() -> None:
    recipe = parse_recipe_text(RESULT, source="r.toml")
    assert isinstance(recipe, Recipe)
    assert [s.name for s in recipe.upload.result] == ["page"]
    assert recipe.gallery is not None
    assert recipe.gallery.id == "{random_id}"
    assert recipe.gallery.create == []
    assert [s.name for s in recipe.gallery.result] == ["gallery_page"]


@pytest.mark.parametrize(
    ("edit", "where", "message"),
    [
        (('url = "{page}"', 'url = "{pgae}"'), "upload.result[0].url", "{pgae}"),
        (
            ('url = "/done?upload_id={gallery_id}"', 'url = "/done/{gallery}"'),
            "gallery.result[0].url",
            "{gallery}",
        ),
        (('id = "{random_id}"', 'id = "{randomid}"'), "gallery.id", "{randomid}"),
        (('id = "{random_id}"\n', ""), "gallery.create", "or an id template"),
        (
            ('type = "file"', 'type = "file"\n[upload.fields.g]\nvalue = "1"\notherwise = "2"'),
            "upload.fields.g.otherwise",
            "only a text field with 'when'",
        ),
        (
            ('extract = { link = "css:input#link" }', 'extract = { link = "css:input[" }'),
            "upload.result[0].extract",
            "bad CSS selector",
        ),
    ],
)
def test_result_step_problems_are_named(edit: tuple[str, str], where: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_recipe_text(RESULT.replace(*edit), source="r.toml")
    found = [(p, m) for p, m in caught.value.problems if p.startswith(f"r.toml: {where}")]
    assert found, caught.value.problems
    assert message in found[0][1]
