"""Ordering of an episode's hoster links by language and hoster preference (sans-IO)."""

from __future__ import annotations

from collections.abc import Sequence

from hathd.anime.model import HosterLink


def _norm(name: str) -> str:
    return "".join(c for c in name.casefold() if c.isalnum())


def order_candidates(
    links: Sequence[HosterLink], languages: Sequence[str], hosters: Sequence[str]
) -> list[HosterLink]:
    """The links in a preferred language, best first: by the language's rank in ``languages``,
    then the hoster's rank in ``hosters`` (unlisted hosters after the listed ones, in page
    order). Links in other languages are left out."""
    lang_rank = {lang: i for i, lang in enumerate(languages)}
    hoster_rank = {_norm(h): i for i, h in enumerate(hosters)}
    chosen = [(i, link) for i, link in enumerate(links) if link.language in lang_rank]
    chosen.sort(
        key=lambda pair: (
            lang_rank[pair[1].language],
            hoster_rank.get(_norm(pair[1].hoster), len(hoster_rank)),
            pair[0],
        )
    )
    return [link for _, link in chosen]
