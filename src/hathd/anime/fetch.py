"""Provider page requests (Trio shell around the sans-IO providers).

Every request, and every redirect hop, passes the per-domain politeness gate
(:class:`hathd.anime.gate.DomainGate`, the engine's lane settings). Redirects are followed by
hand: at most :data:`MAX_REDIRECTS`, and a URL met twice is a redirect loop.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx

from hathd.anime.gate import DomainGate
from hathd.anime.providers.base import ProviderError

MAX_REDIRECTS = 5
"""Redirect hops one page request may take."""

MAX_PAGE = 8 << 20
"""Largest page body in bytes."""

USER_AGENT = "hathd-anime/1 (+https://github.com/hathd)"


class ProviderFetcher:
    """Fetches provider pages: ``timeout`` seconds per request."""

    def __init__(self, gate: DomainGate, *, timeout: float = 30.0) -> None:
        self.gate = gate
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def request(self, method: str, url: str, *, form: dict[str, str] | None = None) -> bytes:
        """The body of ``url`` after redirects.

        :raises ProviderError: HTTP status >= 400, a redirect loop or too many redirects, a
            body above :data:`MAX_PAGE` bytes, a network error.
        """
        body, _ = await self.fetch(method, url, form=form)
        return body

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        form: dict[str, str] | None = None,
        limit: int = MAX_PAGE,
    ) -> tuple[bytes, str]:
        """``(body, Content-Type)`` of ``url`` after redirects; ``limit`` bytes at most (a
        larger ``Content-Length`` is refused before the body is read).

        :raises ProviderError: as :meth:`request`, with ``limit`` for :data:`MAX_PAGE`.
        """
        seen: set[str] = set()
        for _ in range(MAX_REDIRECTS + 1):
            if url in seen:
                raise ProviderError(f"redirect loop at {url}")
            seen.add(url)
            host = (urlsplit(url).hostname or "").lower()
            try:
                async with self.gate.request(host):
                    request = self._client.build_request(method, url, data=form)
                    response = await self._client.send(request, stream=True)
                    try:
                        if response.is_redirect:
                            location = response.headers.get("location", "")
                            url = urljoin(url, location)
                            if method == "POST" and response.status_code in (301, 302, 303):
                                method, form = "GET", None
                            continue
                        if response.status_code >= 400:
                            raise ProviderError(f"HTTP {response.status_code} from {url}")
                        announced = response.headers.get("content-length", "")
                        if announced.isdigit() and int(announced) > limit:
                            raise ProviderError(f"body larger than {limit} bytes: {url}")
                        body = bytearray()
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > limit:
                                raise ProviderError(f"body larger than {limit} bytes: {url}")
                        return bytes(body), response.headers.get("content-type", "")
                    finally:
                        await response.aclose()
            except httpx.HTTPError as exc:
                raise ProviderError(f"{type(exc).__name__} for {url}: {exc}") from exc
        raise ProviderError(f"more than {MAX_REDIRECTS} redirects from {url}")

    async def get_text(self, url: str) -> str:
        """``GET url`` decoded as UTF-8 (invalid bytes replaced). See :meth:`request`."""
        return (await self.request("GET", url)).decode("utf-8", "replace")
