"""Client ID metadata documents: an HTTPS URL as an OAuth ``client_id`` (MCP authorization,
2025-11-25; draft-ietf-oauth-client-id-metadata-document).

A client without a registration here may name itself by the URL of a JSON document that
describes it. ``ClientDocuments.load`` fetches that document and reads it as a registration:

- the URL is https with a path, no fragment, no user or password and no ``.``/``..`` segment;
  plain http only on 127.0.0.1, ``localhost`` or ``::1``, and only when
  ``AGENT_SERVER_OAUTH_CLIENT_DOCUMENTS_ALLOW_LOOPBACK`` is on (development and tests);
- the host must resolve to publicly routable addresses (the check webhook deliveries use) and
  the request goes to the address that was checked: no redirects, ``TIMEOUT_SECONDS``, at most
  ``MAX_BYTES`` read;
- the document is a JSON object whose ``client_id`` is exactly the URL, with
  ``redirect_uris``; it names no secret, so the client is public (PKCE, auth method
  ``none``), and an http redirect URI must be on a loopback address, as at registration.

A document read is kept ``CACHE_SECONDS`` in this process (a refusal ``REFUSAL_SECONDS``), so an
authorization and its token exchange fetch it once and a bad URL is not fetched on every
request. Each read is also recorded in ``oauth_clients`` under ``stored_client_id(url)`` (the
URL can be longer than a client id column): the consent page names the client from it, and a
token's row leads back to the URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mcp.shared.auth import OAuthClientInformationFull
from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from agent_server import __version__
from agent_server.events.urls import UnsafeCallback, resolve_target
from agent_server.kernel.config import Settings
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database
from agent_server.oauth.models import OAuthClient
from agent_server.runtime import Runtime

if TYPE_CHECKING:
    import httpx

log = get_logger(__name__)

MAX_BYTES = 64 * 1024
TIMEOUT_SECONDS = 5.0
CACHE_SECONDS = 300.0
REFUSAL_SECONDS = 30.0
MAX_CACHED = 500
MAX_URL_LENGTH = 2000
DOCUMENT_KEY = "client_id_metadata_document"
"""The key under which ``oauth_clients.info`` keeps the URL of a document's client."""
DOCUMENT_ID_PREFIX = "cimd_"
"""How a document client's stored id starts (a registered client's id is a UUID)."""
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class ClientDocumentError(Exception):
    """Why a client ID metadata document cannot be used; the message completes
    "the client ID metadata document at <url> ..."."""


def is_document_url(client_id: str) -> bool:
    """Whether ``client_id`` names a metadata document rather than a registered client."""
    return client_id.startswith(("https://", "http://"))


def stored_client_id(client_id: str) -> str:
    """The id stored for a client in grants and tokens: a registered client's own id, a
    document URL's digest (at most 64 characters either way)."""
    if not is_document_url(client_id):
        return client_id
    digest = base64.urlsafe_b64encode(hashlib.sha256(client_id.encode()).digest()).decode()
    return DOCUMENT_ID_PREFIX + digest.rstrip("=")


def check_redirect_uris(client: OAuthClientInformationFull) -> str | None:
    """Why the client's redirect URIs are refused (http off a loopback address), or None."""
    for uri in client.redirect_uris or []:
        if uri.scheme == "http" and uri.host not in LOOPBACK_HOSTS:
            return f"redirect URI {uri} must use https, or http on a loopback address"
    return None


def _check_url(url: str, *, allow_loopback: bool) -> bool:
    """Refuse a URL that may not name a document; whether it is an allowed loopback one."""
    if len(url) > MAX_URL_LENGTH:
        raise ClientDocumentError(f"is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ClientDocumentError(f"is not a valid URL ({exc})") from None
    host = (parts.hostname or "").lower()
    loopback = parts.scheme == "http" or host in LOOPBACK_HOSTS
    if loopback and not (allow_loopback and host in LOOPBACK_HOSTS):
        raise ClientDocumentError(
            "must be an https URL on a public host (http on 127.0.0.1 or localhost only when "
            "the server allows it for development)"
        )
    if parts.scheme not in ("https", "http") or not host:
        raise ClientDocumentError("must be an absolute https URL")
    if parts.username is not None or parts.password is not None:
        raise ClientDocumentError("must not contain a user name or password")
    if parts.fragment or "#" in url:
        raise ClientDocumentError("must not contain a fragment")
    segments = parts.path.split("/")
    if parts.path in ("", "/") or "." in segments or ".." in segments:
        raise ClientDocumentError("must have a path, without . or .. segments")
    return loopback


def _pinned_get(client: httpx.AsyncClient, url: str, host: str, address: str) -> httpx.Request:
    """A GET of ``url`` sent to the checked ``address``, with the URL's own Host and TLS name."""
    import httpx

    target = httpx.URL(url)
    default_port = 443 if target.scheme == "https" else 80
    host_header = host if ":" not in host else f"[{host}]"
    if target.port is not None and target.port != default_port:
        host_header = f"{host_header}:{target.port}"
    extensions: dict[str, Any] = {"sni_hostname": host} if target.scheme == "https" else {}
    return client.build_request(
        "GET",
        target.copy_with(host=address),
        headers={"Host": host_header, "Accept": "application/json"},
        extensions=extensions,
    )


async def _fetch(
    url: str, *, allow_private: bool, transport: httpx.AsyncBaseTransport | None
) -> Any:
    import httpx  # loaded on first use: a server that never calls out does without it

    try:
        target = await resolve_target(url, allow_private=allow_private)
    except UnsafeCallback as exc:
        raise ClientDocumentError(str(exc)) from None
    async with httpx.AsyncClient(
        transport=transport,
        timeout=TIMEOUT_SECONDS,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": f"AgentServer-OAuth/{__version__}"},
    ) as client:
        request = _pinned_get(client, url, target.host, str(target.addresses[0]))
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ClientDocumentError(f"could not be fetched ({type(exc).__name__})") from None
        try:
            if response.status_code != 200:
                raise ClientDocumentError(
                    f"answered HTTP {response.status_code} (a document answers 200, "
                    "without redirects)"
                )
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_BYTES:
                    raise ClientDocumentError(f"is larger than {MAX_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise ClientDocumentError(f"could not be read ({type(exc).__name__})") from None
        finally:
            await response.aclose()
    try:
        return json.loads(bytes(body))
    except ValueError:
        raise ClientDocumentError("is not JSON") from None


def _client_of(url: str, document: Any) -> OAuthClientInformationFull:
    if not isinstance(document, dict):
        raise ClientDocumentError("is not a JSON object")
    if document.get("client_id") != url:
        raise ClientDocumentError("must name this very URL as its client_id")
    if "client_secret" in document or "client_secret_expires_at" in document:
        raise ClientDocumentError("must not contain a client secret")
    if document.get("token_endpoint_auth_method", "none") != "none":
        raise ClientDocumentError(
            'must use token_endpoint_auth_method "none": such a client is public and uses PKCE'
        )
    if not document.get("redirect_uris"):
        raise ClientDocumentError("must list the client's redirect_uris")
    try:
        client = OAuthClientInformationFull.model_validate(
            {
                **document,
                "client_id": url,
                "client_secret": None,
                "token_endpoint_auth_method": "none",
            }
        )
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "document"
        raise ClientDocumentError(f"has an invalid {where}: {exc.errors()[0]['msg']}") from None
    refused = check_redirect_uris(client)
    if refused is not None:
        raise ClientDocumentError(f"is refused: {refused}")
    return client


class ClientDocuments:
    """Fetches, checks and briefly keeps client ID metadata documents (module docstring)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.transport = transport
        self._cache: OrderedDict[str, tuple[float, OAuthClientInformationFull | str]] = (
            OrderedDict()
        )

    async def load(self, url: str) -> OAuthClientInformationFull:
        """The client ``url`` describes; ``ClientDocumentError`` saying why it cannot be used."""
        kept = self._cache.get(url)
        if kept is not None and kept[0] > time.monotonic():
            if isinstance(kept[1], str):
                raise ClientDocumentError(kept[1])
            return kept[1]
        try:
            loopback = _check_url(
                url, allow_loopback=self.settings.oauth_client_documents_allow_loopback
            )
            document = await _fetch(url, allow_private=loopback, transport=self.transport)
            client = _client_of(url, document)
        except ClientDocumentError as exc:
            self._keep(url, str(exc), REFUSAL_SECONDS)
            log.info("oauth.client_document_refused", client_id=url[:200], reason=str(exc))
            raise
        await self._record(url, client)
        self._keep(url, client, CACHE_SECONDS)
        return client

    def _keep(self, url: str, value: OAuthClientInformationFull | str, seconds: float) -> None:
        self._cache[url] = (time.monotonic() + seconds, value)
        self._cache.move_to_end(url)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)

    async def _record(self, url: str, client: OAuthClientInformationFull) -> None:
        """Keep what the document said under the client's stored id (insert or update)."""
        key = stored_client_id(url)
        info = {
            **client.model_dump(
                mode="json", exclude={"client_id", "client_secret"}, exclude_none=True
            ),
            DOCUMENT_KEY: url,
        }
        for _ in range(2):  # a concurrent first read may insert the row between our two steps
            try:
                async with self.db.uow() as uow:
                    changed = await uow.session.execute(
                        update(OAuthClient)
                        .where(OAuthClient.client_id == key)
                        .values(info=info)
                        .execution_options(synchronize_session=False)
                    )
                    if changed.rowcount == 0:  # type: ignore[attr-defined]
                        uow.session.add(
                            OAuthClient(
                                client_id=key,
                                info=info,
                                secret_sealed=None,
                                created_at=uow.clock.now(),
                            )
                        )
                    await uow.commit()
                return
            except IntegrityError:
                continue


_PER_RUNTIME: weakref.WeakKeyDictionary[Runtime, ClientDocuments] = weakref.WeakKeyDictionary()


def documents_for(runtime: Runtime) -> ClientDocuments:
    """The documents kept for ``runtime``'s server: one cache for the provider and the
    authorization endpoint's check."""
    found = _PER_RUNTIME.get(runtime)
    if found is None:
        found = _PER_RUNTIME[runtime] = ClientDocuments(runtime.settings, runtime.db)
    return found
