"""The set of configured recipes and their live sessions (one per service, created lazily).

All sessions share one global token bucket (``[recipes] global_rate``/``global_burst``,
requests/s), on top of each service's own bucket.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from hathd.errors import PermanentError
from hathd.recipes.config import RecipesConfig
from hathd.recipes.credentials import resolve_credentials
from hathd.recipes.model import ForumRecipe, Recipe
from hathd.recipes.ratelimit import new_bucket
from hathd.recipes.runner import ServiceSession
from hathd.recipes.thumbnails import Thumbnailer
from hathd.tokenbucket import TokenBucket

log = logging.getLogger(__name__)


class UnknownServiceError(LookupError):
    """No enabled recipe has this id."""


class Uploader:
    """Recipes by id and their sessions. ``transport`` (tests) goes to every httpx client."""

    def __init__(
        self,
        recipes: Mapping[str, Recipe | ForumRecipe],
        config: RecipesConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 180.0,
    ) -> None:
        self.recipes = {k: v for k, v in recipes.items() if isinstance(v, Recipe)}
        """The image hosts by id."""
        self.forums = {k: v for k, v in recipes.items() if isinstance(v, ForumRecipe)}
        """The forums by id (``kind = "forum"`` recipes)."""
        self.config = config
        self._transport = transport
        self._timeout = timeout
        self._sessions: dict[str, ServiceSession] = {}
        self._global: TokenBucket | None = None
        self.thumbnailer = Thumbnailer()
        """Makes the local thumbnails of every session (worker threads, bounded)."""
        self._credentials: dict[str, dict[str, str] | PermanentError] = {}

    def read_credentials(self) -> None:
        """Read every configured service's credentials now (``NAME_file`` keys, the keyring:
        blocking, so call it in a worker thread at start-up); a service whose credentials
        cannot be read keeps the error, raised when the service is used, and logged here."""
        every: dict[str, Recipe | ForumRecipe] = {**self.recipes, **self.forums}
        for rid, recipe in every.items():
            self._credentials[rid] = self._read(recipe)

    def _read(self, recipe: Recipe | ForumRecipe) -> dict[str, str] | PermanentError:
        try:
            return resolve_credentials(recipe, self.config.services.get(recipe.id))
        except PermanentError as exc:
            log.warning("credentials of %s: %s", recipe.id, exc)
            return exc

    def recipe(self, service: str) -> Recipe:
        """The image host ``service``.

        :raises UnknownServiceError: with the list of known image hosts.
        """
        try:
            return self.recipes[service]
        except KeyError:
            known = ", ".join(sorted(self.recipes)) or "none"
            raise UnknownServiceError(f"unknown service {service!r} (known: {known})") from None

    def forum(self, name: str) -> ForumRecipe:
        """The forum ``name``.

        :raises UnknownServiceError: with the list of known forums.
        """
        try:
            return self.forums[name]
        except KeyError:
            known = ", ".join(sorted(self.forums)) or "none"
            raise UnknownServiceError(f"unknown forum {name!r} (known: {known})") from None

    def session(self, service: str) -> ServiceSession:
        """The session of ``service`` (an image host or a forum), created on first use
        (inside ``trio.run``).

        :raises UnknownServiceError: no such recipe.
        :raises PermanentError: a credential file cannot be read, or the keyring is asked
            for and unavailable (see :mod:`hathd.recipes.credentials`).
        """
        recipe: Recipe | ForumRecipe = (
            self.forums[service] if service in self.forums else self.recipe(service)
        )
        found = self._sessions.get(service)
        if found is None:
            if self._global is None:
                self._global = new_bucket(self.config.global_rate, self.config.global_burst)
            credentials = self._credentials.get(service)
            if credentials is None:
                credentials = self._credentials[service] = self._read(recipe)
            if isinstance(credentials, PermanentError):
                raise type(credentials)(*credentials.args)
            found = ServiceSession(
                recipe,
                credentials,
                global_bucket=self._global,
                transport=self._transport,
                timeout=self._timeout,
                thumbnailer=self.thumbnailer,
            )
            self._sessions[service] = found
        return found

    async def aclose(self) -> None:
        """Close every session's HTTP clients."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.aclose()
        self.thumbnailer.close()

    async def close_when_idle(self) -> None:
        """Ask every session to close once its running operations end (shutdown)."""
        for session in list(self._sessions.values()):
            await session.close_when_idle()

    def statistics(self) -> dict[str, Any]:
        """Per-service counters: requests, logins, retries, uploads, failures, bytes sent, and
        the limiter's admitted requests and total wait (seconds)."""
        out: dict[str, Any] = {}
        for name, session in sorted(self._sessions.items()):
            stats = session.stats
            limiter = session.limiter.statistics()
            out[name] = {
                "requests": stats.requests,
                "logins": stats.logins,
                "retries": stats.retries,
                "uploads": stats.uploads,
                "failures": stats.failures,
                "bytes_sent": stats.bytes_sent,
                "limiter_wait": limiter.waited,
            }
        return out
