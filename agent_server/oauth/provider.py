"""The OAuth authorization server behind ``/mcp``, on the SDK's provider protocol.

The SDK serves the endpoints (``/.well-known/oauth-authorization-server``, ``/register``,
``/authorize``, ``/token``, ``/revoke`` and the protected-resource metadata) and checks what
they can check alone: PKCE (S256 only), redirect URIs, client secrets, expiry. This provider
stores and decides the rest:

- ``authorize`` records the request and sends the browser to the consent page
  (``agent_server.oauth.consent``), where the owner signs in with the mailed code and picks
  the agent the client acts for; the code issued there is bound to that agent.
- A code is exchanged once; a replayed code revokes what it issued (RFC 6749 §4.1.2).
- Access tokens last ``ACCESS_TTL``; a refresh token is used once and replaced (rotation). A
  refresh token presented again revokes its whole grant, so a stolen copy dies with the
  original.
- Revoking an access or a refresh token revokes the grant: every token it issued.
- API keys are still bearer tokens: ``load_access_token`` hands them to ``ApiKeyVerifier``.
- A client may also be named by the https URL of its metadata document
  (``agent_server.oauth.client_documents``): ``get_client`` reads the document instead of a
  registration, and grants and tokens store the URL's digest (``stored_client_id``).

An access token resolves to the agent as the gate sees it (``Caller``), read fresh on every
request, so a tool call by an OAuth token passes the same gate and meter as the agent's key.
Races (two exchanges of one code, two uses of one refresh token) are settled by conditional
UPDATEs: one wins, the other is refused.
"""

# Long by design: one class implementing the SDK's OAuth provider protocol.

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.server.auth.routes import validate_issuer_url
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import OAuthClientInformationFull
from mcp.shared.auth import OAuthToken as TokenResponse
from pydantic import AnyHttpUrl
from sqlalchemy import select, update

from agent_server.accounts.keys import hash_secret, looks_like_api_key
from agent_server.accounts.models import Agent, AgentStatus
from agent_server.accounts.service import pepper
from agent_server.gate import Caller
from agent_server.kernel.config import Settings
from agent_server.kernel.inputs import check_json
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import UnitOfWork
from agent_server.mcp.auth import CALLER_CLAIM, REMEMBERED_CLAIM, ApiKeyVerifier
from agent_server.oauth.client_documents import (
    DOCUMENT_ID_PREFIX,
    DOCUMENT_KEY,
    ClientDocumentError,
    check_redirect_uris,
    documents_for,
    is_document_url,
    stored_client_id,
)
from agent_server.oauth.models import OAuthClient, OAuthGrant, OAuthToken
from agent_server.runtime import Runtime

log = get_logger(__name__)

ACCESS_PREFIX = "as_oat_"
REFRESH_PREFIX = "as_ort_"
CODE_PREFIX = "as_oac_"
ACCESS_TTL = timedelta(hours=1)
REFRESH_TTL = timedelta(days=30)
CODE_TTL = timedelta(minutes=5)
# Long enough for the owner to ask for a sign-in code, read the mail and enter it.
REQUEST_TTL = timedelta(minutes=30)
CONSENT_PATH = "/oauth/consent"
MAX_TOKEN_LENGTH = 200


def secret_hash(settings: Settings, value: str, kind: str) -> str:
    """The peppered HMAC under which a code, token or consent handle of ``kind`` is stored."""
    return hash_secret(pepper(settings), value, context=f"oauth-{kind}")


def _fernet(settings: Settings) -> Fernet:
    key = hmac.new(pepper(settings).encode(), b"oauth-client-secret", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def _new(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def _usable(token: str, prefix: str) -> bool:
    return token.startswith(prefix) and len(token) <= MAX_TOKEN_LENGTH and token.isascii()


def same_resource(a: str, b: str) -> bool:
    """Whether two resource indicators name the same URL, a trailing slash aside."""
    return a.rstrip("/") == b.rstrip("/")


class GrantCode(AuthorizationCode):
    grant_id: int
    agent_id: int


class GrantRefreshToken(RefreshToken):
    row_id: int
    grant_id: int
    agent_id: int


class GrantAccessToken(AccessToken):
    grant_id: int


class AgentServerOAuth(OAuthAuthorizationServerProvider[GrantCode, GrantRefreshToken, AccessToken]):
    """Clients, grants and tokens in the product's database (see the module docstring)."""

    def __init__(self, runtime: Runtime, keys: ApiKeyVerifier, *, issuer: str, resource: str):
        self.runtime = runtime
        self.keys = keys
        self.issuer = issuer.rstrip("/")
        self.resource = resource
        self.documents = documents_for(runtime)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def _wall(self, when: datetime) -> float:
        """``when`` (on the runtime's clock) as wall-clock epoch seconds, which the SDK's own
        expiry checks compare with ``time.time()``."""
        return time.time() + (when - self.runtime.clock.now()).total_seconds()

    # Clients -----------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        if is_document_url(client_id):
            try:
                return await self.documents.load(client_id)
            except ClientDocumentError:  # logged; /authorize tells the browser why
                return None
        if not client_id or len(client_id) > 64:
            return None
        async with self.runtime.db.uow() as uow:
            row = (
                await uow.session.execute(
                    select(OAuthClient.info, OAuthClient.secret_sealed).where(
                        OAuthClient.client_id == client_id
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        secret = None
        if row.secret_sealed is not None:
            try:
                secret = _fernet(self.settings).decrypt(row.secret_sealed.encode()).decode()
            except InvalidToken:
                # Sealed under another pepper: the client cannot authenticate any more.
                log.warning("oauth.client_secret_unreadable", client_id=client_id)
                return None
        return OAuthClientInformationFull.model_validate(
            {**row.info, "client_id": client_id, "client_secret": secret}
        )

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        refused = check_redirect_uris(client_info)
        if refused is not None:
            raise RegistrationError("invalid_redirect_uri", refused)
        secret = client_info.client_secret
        sealed = _fernet(self.settings).encrypt(secret.encode()).decode() if secret else None
        info = client_info.model_dump(
            mode="json", exclude={"client_id", "client_secret"}, exclude_none=True
        )
        try:
            check_json(info)
        except ValueError as exc:
            raise RegistrationError("invalid_client_metadata", f"client metadata {exc}") from None
        async with self.runtime.db.uow() as uow:
            uow.session.add(
                OAuthClient(
                    client_id=client_info.client_id,
                    info=info,
                    secret_sealed=sealed,
                    created_at=uow.clock.now(),
                )
            )
            await uow.commit()
        log.info(
            "oauth.client_registered",
            client_id=client_info.client_id,
            client_name=client_info.client_name,
            auth_method=client_info.token_endpoint_auth_method,
        )

    # Authorization -----------------------------------------------------------------------

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        if params.resource is not None and not same_resource(params.resource, self.resource):
            raise AuthorizeError(
                "invalid_target", f"this server issues tokens only for {self.resource}"
            )
        handle = secrets.token_urlsafe(32)
        async with self.runtime.db.uow() as uow:
            now = uow.clock.now()
            uow.session.add(
                OAuthGrant(
                    request_hash=secret_hash(self.settings, handle, "request"),
                    client_id=stored_client_id(client.client_id),
                    redirect_uri=str(params.redirect_uri),
                    redirect_uri_explicit=params.redirect_uri_provided_explicitly,
                    code_challenge=params.code_challenge,
                    state=params.state,
                    scopes=" ".join(params.scopes or []),
                    resource=self.resource,
                    created_at=now,
                    expires_at=now + REQUEST_TTL,
                )
            )
            await uow.commit()
        return f"{self.issuer}{CONSENT_PATH}?request={handle}"

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> GrantCode | None:
        if not _usable(authorization_code, CODE_PREFIX):
            return None
        digest = secret_hash(self.settings, authorization_code, "code")
        async with self.runtime.db.uow() as uow:
            grant = await uow.session.scalar(
                select(OAuthGrant).where(
                    OAuthGrant.code_hash == digest,
                    OAuthGrant.client_id == stored_client_id(client.client_id),
                )
            )
            if grant is None or grant.revoked_at is not None or grant.agent_id is None:
                return None
            assert grant.code_expires_at is not None
            if grant.exchanged_at is not None:
                await _revoke_grant(uow, grant.id)
                await uow.commit()
                log.warning("oauth.code_replayed", grant_id=grant.id, client_id=client.client_id)
                return None
            if grant.code_expires_at <= uow.clock.now():
                return None
            return GrantCode(
                code=authorization_code,
                scopes=grant.scopes.split(),
                expires_at=self._wall(grant.code_expires_at),
                client_id=client.client_id,
                code_challenge=grant.code_challenge,
                redirect_uri=grant.redirect_uri,
                redirect_uri_provided_explicitly=grant.redirect_uri_explicit,
                resource=grant.resource,
                subject=f"agent-{grant.agent_id}",
                grant_id=grant.id,
                agent_id=grant.agent_id,
            )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: GrantCode
    ) -> TokenResponse:
        async with self.runtime.db.uow() as uow:
            now = uow.clock.now()
            won = await uow.session.execute(
                update(OAuthGrant)
                .where(
                    OAuthGrant.id == authorization_code.grant_id,
                    OAuthGrant.exchanged_at.is_(None),
                    OAuthGrant.revoked_at.is_(None),
                    OAuthGrant.code_expires_at > now,
                )
                .values(exchanged_at=now)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                raise TokenError("invalid_grant", "authorization code was already used")
            tokens = await self._issue(
                uow,
                grant_id=authorization_code.grant_id,
                agent_id=authorization_code.agent_id,
                client_id=stored_client_id(client.client_id),
                scopes=authorization_code.scopes,
                resource=authorization_code.resource,
            )
            await uow.commit()
        log.info(
            "oauth.tokens_issued",
            grant_id=authorization_code.grant_id,
            agent_id=authorization_code.agent_id,
            client_id=client.client_id,
        )
        return tokens

    async def _issue(
        self,
        uow: UnitOfWork,
        *,
        grant_id: int,
        agent_id: int,
        client_id: str,
        scopes: list[str],
        resource: str | None,
    ) -> TokenResponse:
        now = uow.clock.now()
        access, refresh = _new(ACCESS_PREFIX), _new(REFRESH_PREFIX)
        for kind, value, ttl in (("access", access, ACCESS_TTL), ("refresh", refresh, REFRESH_TTL)):
            uow.session.add(
                OAuthToken(
                    grant_id=grant_id,
                    agent_id=agent_id,
                    client_id=client_id,
                    kind=kind,
                    token_hash=secret_hash(self.settings, value, kind),
                    scopes=" ".join(scopes),
                    resource=resource,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return TokenResponse(
            access_token=access,
            expires_in=int(ACCESS_TTL.total_seconds()),
            refresh_token=refresh,
            scope=" ".join(scopes) or None,
        )

    # Refresh -----------------------------------------------------------------------------

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> GrantRefreshToken | None:
        if not _usable(refresh_token, REFRESH_PREFIX):
            return None
        digest = secret_hash(self.settings, refresh_token, "refresh")
        async with self.runtime.db.uow() as uow:
            row = (
                await uow.session.execute(
                    select(OAuthToken, OAuthGrant.revoked_at)
                    .join(OAuthGrant, OAuthGrant.id == OAuthToken.grant_id)
                    .where(
                        OAuthToken.token_hash == digest,
                        OAuthToken.kind == "refresh",
                        OAuthToken.client_id == stored_client_id(client.client_id),
                    )
                )
            ).one_or_none()
            if row is None or row.revoked_at is not None:
                return None
            token: OAuthToken = row[0]
            if token.used_at is not None:
                # Rotation: this token was already exchanged, so one of its holders is not
                # the client. End the grant for both.
                await _revoke_grant(uow, token.grant_id)
                await uow.commit()
                log.warning(
                    "oauth.refresh_reused", grant_id=token.grant_id, client_id=client.client_id
                )
                return None
            if token.expires_at <= uow.clock.now():
                return None
            return GrantRefreshToken(
                token=refresh_token,
                client_id=client.client_id,
                scopes=token.scopes.split(),
                expires_at=int(self._wall(token.expires_at)),
                resource=token.resource,
                subject=f"agent-{token.agent_id}",
                row_id=token.id,
                grant_id=token.grant_id,
                agent_id=token.agent_id,
            )

    async def exchange_refresh_token(
        self,
        client: OAuthClientInformationFull,
        refresh_token: GrantRefreshToken,
        scopes: list[str],
    ) -> TokenResponse:
        async with self.runtime.db.uow() as uow:
            now = uow.clock.now()
            won = await uow.session.execute(
                update(OAuthToken)
                .where(OAuthToken.id == refresh_token.row_id, OAuthToken.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                raise TokenError("invalid_grant", "refresh token was already used")
            revoked = await uow.session.scalar(
                select(OAuthGrant.revoked_at).where(OAuthGrant.id == refresh_token.grant_id)
            )
            if revoked is not None:
                raise TokenError("invalid_grant", "refresh token was revoked")
            tokens = await self._issue(
                uow,
                grant_id=refresh_token.grant_id,
                agent_id=refresh_token.agent_id,
                client_id=stored_client_id(client.client_id),
                scopes=scopes,
                resource=refresh_token.resource,
            )
            await uow.commit()
        log.info(
            "oauth.tokens_refreshed", grant_id=refresh_token.grant_id, client_id=client.client_id
        )
        return tokens

    # Access tokens -----------------------------------------------------------------------

    async def load_access_token(self, token: str) -> AccessToken | None:
        if looks_like_api_key(token):
            return await self.keys.verify_token(token)
        if not _usable(token, ACCESS_PREFIX):
            return None
        digest = secret_hash(self.settings, token, "access")
        async with self.runtime.db.uow() as uow:
            row = (
                await uow.session.execute(
                    select(
                        OAuthToken.grant_id,
                        OAuthToken.client_id,
                        OAuthToken.scopes,
                        OAuthToken.resource,
                        OAuthToken.expires_at,
                        Agent.id,
                        Agent.name,
                        Agent.email,
                        Agent.status,
                        Agent.email_verified,
                        Agent.api_key_prefix,
                        Agent.currency,
                        OAuthClient.info,
                    )
                    .join(OAuthGrant, OAuthGrant.id == OAuthToken.grant_id)
                    .join(Agent, Agent.id == OAuthToken.agent_id)
                    .outerjoin(OAuthClient, OAuthClient.client_id == OAuthToken.client_id)
                    .where(
                        OAuthToken.token_hash == digest,
                        OAuthToken.kind == "access",
                        OAuthToken.expires_at > uow.clock.now(),
                        OAuthGrant.revoked_at.is_(None),
                        Agent.deleted_at.is_(None),
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        caller = Caller(
            agent_id=int(row.id),
            name=row.name,
            email=row.email,
            status=AgentStatus(row.status),
            email_verified=bool(row.email_verified),
            key_prefix=row.api_key_prefix,
            currency=row.currency,
        )
        # A document's client is known by its URL, stored beside the digest the token keeps.
        document = None
        if row.client_id.startswith(DOCUMENT_ID_PREFIX):
            document = (row.info or {}).get(DOCUMENT_KEY)
        return GrantAccessToken(
            token=token,
            client_id=str(document or row.client_id),
            scopes=row.scopes.split(),
            expires_at=int(self._wall(row.expires_at)),
            resource=row.resource,
            subject=f"agent-{caller.agent_id}",
            claims={CALLER_CLAIM: asdict(caller), REMEMBERED_CLAIM: False},
            grant_id=row.grant_id,
        )

    async def revoke_token(self, token: AccessToken | GrantRefreshToken) -> None:
        grant_id = getattr(token, "grant_id", None)
        if grant_id is None:  # an API key: revoked on the dashboard, not here
            return
        async with self.runtime.db.uow() as uow:
            await _revoke_grant(uow, int(grant_id))
            await uow.commit()
        log.info("oauth.revoked", grant_id=grant_id, client_id=token.client_id)


async def _revoke_grant(uow: UnitOfWork, grant_id: int) -> None:
    await uow.session.execute(
        update(OAuthGrant)
        .where(OAuthGrant.id == grant_id, OAuthGrant.revoked_at.is_(None))
        .values(revoked_at=uow.clock.now())
        .execution_options(synchronize_session=False)
    )


def http_auth(runtime: Runtime, keys: ApiKeyVerifier, resource_url: str) -> dict[str, Any]:
    """``MCPServer`` keyword arguments for bearer auth on ``resource_url`` (``…/mcp``).

    The issuer is the server's base URL. OAuth needs it on https or a loopback address
    (RFC 8414); elsewhere (``0.0.0.0`` without ``AGENT_SERVER_PUBLIC_URL``) only API keys are
    accepted and a 401 names no metadata, so clients ask for the key instead of an OAuth
    sign-in that could not work."""
    issuer = resource_url.rsplit("/mcp", 1)[0] or resource_url
    try:
        validate_issuer_url(AnyHttpUrl(issuer))
    except ValueError as exc:
        log.warning(
            "oauth.disabled",
            reason=f"{exc}; set AGENT_SERVER_PUBLIC_URL to the https URL clients reach",
            issuer=issuer,
        )
        unused = AuthSettings(issuer_url=issuer, resource_server_url=None)
        return {"token_verifier": keys, "auth": unused}
    return {
        "auth_server_provider": AgentServerOAuth(
            runtime, keys, issuer=issuer, resource=resource_url
        ),
        "auth": AuthSettings(
            issuer_url=issuer,
            resource_server_url=resource_url,
            # Every token this server issues is for this resource; API keys name none.
            validate_token_resource=False,
            client_registration_options=ClientRegistrationOptions(enabled=True),
            revocation_options=RevocationOptions(enabled=True),
        ),
    }
