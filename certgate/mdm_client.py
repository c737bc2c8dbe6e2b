"""The HTTP client certgate uses to talk to the MDM (issuance checks, reconciliation).

One aiohttp ClientSession per process, made on first use on the running loop: TLS
verified against ``[mdm] ca_file`` or the system CAs, no redirects followed (a bearer
token must not travel to another host), no proxy from the environment, no compression
(the size budget applies to what the MDM sent), at most ``MAX_CONNECTIONS`` at once.
Every answer is read up to a byte budget; the caller's deadline bounds the whole call.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp

from certgate import __version__ as _version

MAX_CONNECTIONS = 32
USER_AGENT = f"certgate/{_version}"


class MdmClient:
    def __init__(self, ca_file: Path | None = None) -> None:
        self.ca_file = ca_file
        self._session: aiohttp.ClientSession | None = None

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=self.ssl_context())
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),  # the caller's asyncio.timeout
                headers={"User-Agent": USER_AGENT, "Accept": "application/json",
                         "Accept-Encoding": "identity"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the answer, and whether the MDM sent more."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await response.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body[:limit]), len(body) > limit
