"""The admin API client the CLI uses: httpx over the daemon's unix socket.

Usage::

    async with AdminClient(socket_path) as admin:
        status = await admin.get("/api/v1/status")

Errors: :class:`~hathd.errors.DaemonNotRunning` when nothing listens on the socket;
:class:`AdminError` (status code and the JSON error body) for a 4xx/5xx reply.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from hathd.errors import DaemonNotRunning, HathdError


class AdminError(HathdError):
    """The daemon answered with an error status; ``status`` and ``body`` are its reply;
    ``error_code`` is the reply's stable ``code`` (see :mod:`hathd.errors`) or ``None``."""

    code = "admin_error"

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        code = body.get("code") if isinstance(body, dict) else None
        self.error_code: str | None = code if isinstance(code, str) else None
        detail = body.get("error") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {detail}")


class AdminClient:
    """An ``httpx.AsyncClient`` bound to the admin unix socket (``timeout`` in seconds)."""

    def __init__(self, socket_path: str | Path, *, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(self.socket_path)),
            base_url="http://hathd",
            timeout=timeout,
        )

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """Send one request; return the decoded JSON body (``None`` for an empty body).

        :raises DaemonNotRunning: the socket is missing or refuses connections.
        :raises AdminError: the reply status is 400 or above.
        """
        if not self.socket_path.exists():
            raise DaemonNotRunning(f"no daemon socket at {self.socket_path}")
        try:
            reply = await self._client.request(method, path, json=json, params=params)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"no daemon answers on {self.socket_path}: {exc}") from None
        body: Any = None
        if reply.content:
            try:
                body = reply.json()
            except ValueError:
                body = reply.text
        if reply.status_code >= 400:
            raise AdminError(reply.status_code, body)
        return body

    async def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        """``GET path``; see :meth:`request`."""
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any = None) -> Any:
        """``POST path`` with a JSON body; see :meth:`request`."""
        return await self.request("POST", path, json=json)

    async def delete(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        """``DELETE path``; see :meth:`request`."""
        return await self.request("DELETE", path, params=params)
