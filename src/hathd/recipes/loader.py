"""Load and validate recipes: TOML text → :class:`~hathd.recipes.model.Recipe`.

Every problem is reported with its key path, e.g. ``upload.fields.image.type: must be one of
file, text, value; got 'files'`` or ``login[0].then[1].extract.sess_id: bad CSS selector``.
Besides the shape, a recipe is checked for placeholders that can never be filled: every
``{name}`` must be a built-in value (:data:`BUILTIN_NAMES`), a declared credential or option,
or a value some step extracts.

Built-in recipes ship as package data in ``hathd/recipes/builtin/*.toml``; a recipe in the
configured directory with the same ``id`` replaces the built-in one.
"""

from __future__ import annotations

import importlib.resources
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from hathd.confutil import FieldError
from hathd.errors import ConfigError
from hathd.recipes.config import RecipesConfig, ServiceConfig
from hathd.recipes.extract import Extractor, parse_extractor
from hathd.recipes.model import ForumRecipe, Recipe, Site, Step
from hathd.recipes.plan import FILE_FIELD_VALUES
from hathd.recipes.template import TemplateError, placeholders

BUILTIN_NAMES = frozenset(
    {
        "base_url",
        "file",
        "filename",
        "stem",
        "ext",
        "mime",
        "size",
        "service",
        "gallery_id",
        "gallery_name",
        "batch",
        "index",
        "thumb_filename",
        "thumb_mime",
        "random_id",
    }
)
"""Values every template may use: the recipe's base URL; the job's file path, its name, stem,
extension (no dot), MIME type and size in bytes; the service id; the batch id, the file's
index in it; the gallery id and name (empty without a gallery); the local thumbnail's file
name and MIME type (empty without a ``[thumbnail]``); ``random_id``, 20 random characters of
``[0-9a-z]`` new for each upload and each gallery."""

FORUM_NAMES = frozenset({"base_url", "service", "message", "thread_id", "forum_id", "subject"})
"""Values a forum recipe's templates may use besides its credentials, options, derived and
extracted values: the post's ``message``, the ``thread_id`` replied to, the ``forum_id`` and
``subject`` of a new thread (empty when not used)."""

KINDS = ("upload", "forum")
"""Recipe kinds (``kind`` key; ``upload`` when absent): image hosts and forums."""

_converter = cattrs.Converter(forbid_extra_keys=True)


def _structure_extractor(value: Any, _type: Any) -> Extractor:
    if not isinstance(value, str):
        raise TypeError(f"an extractor must be a string, got {type(value).__name__}")
    return parse_extractor(value)


_converter.register_structure_hook(Extractor, _structure_extractor)

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    if re.fullmatch(r"[A-Za-z0-9_-]+", text):
        return f"{path}.{text}" if path else text
    return f'{path}."{text}"' if path else f'"{text}"'


def problems(exc: BaseException, path: str = "") -> Iterator[tuple[str, str]]:
    """Flatten a cattrs structuring error into ``(key_path, message)`` pairs."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, AttributeValidationNote):
                    sub_path = _join(path, note.name)
                elif isinstance(note, IterableValidationNote):
                    sub_path = _join(path, note.index)
            yield from problems(sub, sub_path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            yield _join(path, key), "unknown key"
    elif isinstance(exc, FieldError):
        yield _join(path, exc.field), exc.message
    elif isinstance(exc, KeyError):
        yield path or "(top)", f"missing key {exc}"
    elif isinstance(exc, TypeError | ValueError):
        yield path or "(top)", f"invalid value: {exc}"
    else:
        yield path or "(top)", f"{type(exc).__name__}: {exc}"


def _walk_steps(steps: Iterable[Step], path: str) -> Iterator[tuple[str, Step]]:
    for i, step in enumerate(steps):
        here = f"{path}[{i}]"
        yield here, step
        yield from _walk_steps(step.then, f"{here}.then")


def _extracted_names(recipe: Site) -> set[str]:
    names: set[str] = set(recipe.derive)
    chains = [recipe.login]
    if isinstance(recipe, Recipe):
        chains += [recipe.prepare, recipe.upload.result]
        if recipe.gallery is not None:
            chains += [
                recipe.gallery.create,
                recipe.gallery.finalize,
                recipe.gallery.rename,
                recipe.gallery.result,
            ]
    for chain in chains:
        for _path, step in _walk_steps(chain, ""):
            for name, ex in step.extract.items():
                names.add(name)
                if ex.kind in ("regex", "final_url") and ex.arg:
                    names.update(re.compile(ex.arg).groupindex)
    if isinstance(recipe, Recipe):
        for name, ex in recipe.upload.response.extract.items():
            names.add(name)
            if ex.kind in ("regex", "final_url") and ex.arg:
                names.update(re.compile(ex.arg).groupindex)
    return names


def _checker(known: set[str] | frozenset[str]) -> Any:
    def check(path: str, template: str) -> Iterator[tuple[str, str]]:
        try:
            names = placeholders(template)
        except TemplateError as exc:
            yield path, str(exc)
            return
        unknown = [n for n in dict.fromkeys(names) if n not in known]
        if unknown:
            yield path, "unknown placeholder " + ", ".join("{" + n + "}" for n in unknown)

    return check


def _step_problems(
    check: Any, chains: Iterable[tuple[str, list[Step]]]
) -> Iterator[tuple[str, str]]:
    for chain_path, chain in chains:
        for path, step in _walk_steps(chain, chain_path):
            yield from check(f"{path}.url", step.url)
            for part in ("headers", "query", "form"):
                for key, value in getattr(step, part).items():
                    yield from check(_join(f"{path}.{part}", key), value)


def _site_problems(recipe: Site) -> Iterator[tuple[str, str]]:
    if recipe.session.relogin_url:
        try:
            re.compile(recipe.session.relogin_url)
        except re.error as exc:
            yield "session.relogin_url", f"bad regular expression: {exc}"
    names = [c.name for c in recipe.credentials]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        yield "credentials", f"credential {dup!r} declared twice"
    if not _ID.fullmatch(recipe.id):
        yield "id", f"{recipe.id!r}: start with a letter or digit; then letters, digits, '.-_'"


def _forum_problems(recipe: ForumRecipe) -> Iterator[tuple[str, str]]:
    base = {c.name for c in recipe.credentials} | set(recipe.options)
    derive_check = _checker(base | {"base_url", "service"})
    for name, spec in recipe.derive.items():
        yield from derive_check(f"derive.{name}", spec.partition(":")[2])
    check = _checker(FORUM_NAMES | base | _extracted_names(recipe))
    forum = recipe.forum
    chains = [("login", recipe.login), ("forum.reply", [forum.reply]), ("forum.find", [forum.find])]
    if forum.thread is not None:
        chains.append(("forum.thread", [forum.thread]))
    yield from _step_problems(check, chains)
    for path, pattern in (
        ("forum.post_id", forum.post_id),
        ("forum.post_id_attr", forum.post_id_attr),
    ):
        try:
            if re.compile(pattern).groups < 1:
                yield path, "needs a group that captures the post id"
        except re.error as exc:
            yield path, f"bad regular expression: {exc}"
    for i, err in enumerate(forum.errors):
        try:
            re.compile(err.match)
        except re.error as exc:
            yield f"forum.errors[{i}].match", f"bad regular expression: {exc}"
    if forum.message_template:
        from hathd.recipes.post_message import TemplateSyntaxError, compile_message

        try:
            compile_message(forum.message_template)
        except TemplateSyntaxError as exc:
            yield "forum.message_template", str(exc)
    yield from _site_problems(recipe)


def _template_problems(recipe: Recipe) -> Iterator[tuple[str, str]]:
    known = (
        BUILTIN_NAMES
        | {c.name for c in recipe.credentials}
        | set(recipe.options)
        | _extracted_names(recipe)
    )
    check = _checker(known)

    def check_map(path: str, mapping: Mapping[str, str]) -> Iterator[tuple[str, str]]:
        for key, value in mapping.items():
            yield from check(_join(path, key), value)

    for name, spec in recipe.derive.items():
        yield from check(f"derive.{name}", spec.partition(":")[2])
    chains: list[tuple[str, list[Step]]] = [
        ("login", recipe.login),
        ("prepare", recipe.prepare),
        ("upload.result", recipe.upload.result),
    ]
    if recipe.gallery is not None:
        chains += [
            ("gallery.create", recipe.gallery.create),
            ("gallery.finalize", recipe.gallery.finalize),
            ("gallery.rename", recipe.gallery.rename),
            ("gallery.result", recipe.gallery.result),
        ]
        yield from check("gallery.url", recipe.gallery.url)
        yield from check("gallery.id", recipe.gallery.id)
        declared = {c.name for c in recipe.credentials}
        for i, name in enumerate(recipe.gallery.credentials):
            if name not in declared:
                yield f"gallery.credentials[{i}]", f"no credential named {name!r}"
    yield from _step_problems(check, chains)
    # a result step's extractors are templates too (a file's own entry on a shared page)
    result_chains = [("upload.result", recipe.upload.result)]
    if recipe.gallery is not None:
        result_chains.append(("gallery.result", recipe.gallery.result))
    for chain_path, chain in result_chains:
        for path, step in _walk_steps(chain, chain_path):
            for name, ex in step.extract.items():
                yield from check(_join(f"{path}.extract", name), ex.arg)
    up = recipe.upload
    yield from check("upload.url", up.url)
    yield from check_map("upload.headers", up.headers)
    yield from check_map("upload.query", up.query)
    for name, field in up.fields.items():
        fpath = _join("upload.fields", name)
        if field.type == "value":
            if not field.value:
                yield f"{fpath}.value", "names the extracted value to send; must not be empty"
            elif field.value not in known:
                yield f"{fpath}.value", f"no step extracts a value named {field.value!r}"
        elif field.type == "thumbnail":
            if field.value:
                yield f"{fpath}.value", "a thumbnail field sends the local thumbnail; leave it out"
            if recipe.thumbnail is None:
                yield f"{fpath}.type", "a thumbnail field needs a [thumbnail] table"
        else:
            yield from check(f"{fpath}.value", field.value)
        if field.when and field.when not in known:
            yield f"{fpath}.when", f"no value named {field.when!r}"
        if field.otherwise:
            if field.type != "text" or not field.when:
                yield f"{fpath}.otherwise", "only a text field with 'when' has an otherwise"
            else:
                yield from check(f"{fpath}.otherwise", field.otherwise)
        if field.type == "file":
            if field.value not in FILE_FIELD_VALUES:
                yield (
                    f"{fpath}.value",
                    "a file field sends the job's own file and nothing else: leave value out"
                    f" or write '{{file}}'; got {field.value!r}",
                )
            if field.when:
                yield f"{fpath}.when", "a file field is always sent"
        if field.type in ("file", "thumbnail"):
            yield from check(f"{fpath}.filename", field.filename)
            yield from check(f"{fpath}.content_type", field.content_type)
    if sum(1 for f in up.fields.values() if f.type == "file") != 1:
        yield "upload.fields", "must have exactly one field of type 'file'"
    for key in ("url", "thumb", "delete"):
        yield from check(f"upload.response.{key}", getattr(up.response, key))
    if recipe.gallery is not None and not (recipe.gallery.create or recipe.gallery.id):
        yield "gallery.create", "a gallery needs at least one create step, or an id template"
    if recipe.gallery is not None and recipe.gallery.create and not recipe.gallery.id:
        create_names = {n for _p, s in _walk_steps(recipe.gallery.create, "") for n in s.extract}
        if "gallery_id" not in create_names:
            yield "gallery.create", "no step extracts 'gallery_id'"
    yield from _site_problems(recipe)


def parse_recipe(data: Mapping[str, Any], *, source: str = "<recipe>") -> Recipe | ForumRecipe:
    """Validate plain data (a parsed TOML document) into a :class:`Recipe` (an image host)
    or, with ``kind = "forum"``, a :class:`ForumRecipe`.

    :raises ConfigError: every problem, each key path prefixed with ``source:``.
    """
    data = dict(data)
    kind = data.pop("kind", "upload")
    if kind not in KINDS:
        raise ConfigError([(f"{source}: kind", f"must be one of {', '.join(KINDS)}; got {kind!r}")])
    cls: type[Recipe | ForumRecipe] = ForumRecipe if kind == "forum" else Recipe
    try:
        recipe = _converter.structure(data, cls)
    except (ClassValidationError, ForbiddenExtraKeysError, FieldError) as exc:
        raise ConfigError([(f"{source}: {p}", m) for p, m in problems(exc)]) from None
    found = list(
        _forum_problems(recipe) if isinstance(recipe, ForumRecipe) else _template_problems(recipe)
    )
    if found:
        raise ConfigError([(f"{source}: {p}", m) for p, m in found])
    return recipe


def parse_recipe_text(text: str, *, source: str = "<recipe>") -> Recipe | ForumRecipe:
    """Parse TOML ``text`` and validate it; see :func:`parse_recipe`.

    :raises ConfigError: a TOML syntax error or invalid content.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(source, f"TOML syntax error: {exc}")]) from None
    return parse_recipe(data, source=source)


def load_recipe_file(path: Path) -> Recipe | ForumRecipe:
    """Read and validate one recipe file.

    :raises ConfigError: unreadable, not TOML, or invalid (key paths prefixed with the name).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([(str(path), f"cannot read: {exc}")]) from None
    return parse_recipe_text(text, source=path.name)


def builtin_recipes() -> dict[str, Recipe | ForumRecipe]:
    """The recipes shipped in ``hathd/recipes/builtin`` by id.

    :raises ConfigError: a built-in recipe is invalid (a packaging bug).
    """
    found: dict[str, Recipe | ForumRecipe] = {}
    folder = importlib.resources.files("hathd.recipes") / "builtin"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            recipe = parse_recipe_text(entry.read_text(encoding="utf-8"), source=entry.name)
            found[recipe.id] = recipe
    return found


def load_recipes(directory: str | Path | None) -> dict[str, Recipe | ForumRecipe]:
    """Built-in recipes plus every ``*.toml`` in ``directory`` (which win on the same id).

    :raises ConfigError: the directory is unreadable or any recipe in it is invalid (all
        problems of all files are reported together).
    """
    recipes = builtin_recipes()
    if directory is None:
        return recipes
    folder = Path(directory)
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".toml" and p.is_file())
    except OSError as exc:
        raise ConfigError([("recipes.directory", f"cannot list {folder}: {exc}")]) from None
    problems_all: list[tuple[str, str]] = []
    for path in files:
        try:
            recipe = load_recipe_file(path)
        except ConfigError as exc:
            problems_all.extend(exc.problems)
            continue
        recipes[recipe.id] = recipe
    if problems_all:
        raise ConfigError(problems_all)
    return recipes


def configure[R: Site](recipe: R, service: ServiceConfig | None) -> R:
    """Apply a service's ``[recipes.services."<id>"]`` overrides (base URL, options, limits).

    :raises ConfigError: an option the recipe does not declare.
    """
    if service is None:
        return recipe
    unknown = sorted(set(service.options) - set(recipe.options))
    if unknown:
        raise ConfigError(
            [
                (f'recipes.services."{recipe.id}".options.{k}', "the recipe has no such option")
                for k in unknown
            ]
        )
    limits = attrs.evolve(
        recipe.limits,
        rate=recipe.limits.rate if service.rate is None else service.rate,
        burst=recipe.limits.burst if service.burst is None else service.burst,
        concurrency=(
            recipe.limits.concurrency if service.concurrency is None else service.concurrency
        ),
    )
    return attrs.evolve(
        recipe,
        base_url=service.base_url or recipe.base_url,
        options={**recipe.options, **service.options},
        limits=limits,
    )


def configured_recipes(config: RecipesConfig) -> dict[str, Recipe | ForumRecipe]:
    """Every enabled recipe with its service overrides applied.

    :raises ConfigError: an invalid recipe, or settings for a service no recipe defines.
    """
    recipes = load_recipes(config.directory)
    unknown = sorted(set(config.services) - set(recipes))
    if unknown:
        raise ConfigError(
            [(f'recipes.services."{name}"', "no recipe with this id") for name in unknown]
        )
    out: dict[str, Recipe | ForumRecipe] = {}
    for rid, recipe in recipes.items():
        service = config.services.get(rid)
        if service is not None and not service.enabled:
            continue
        out[rid] = configure(recipe, service)
    return out
