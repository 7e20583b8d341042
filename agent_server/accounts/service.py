"""Account operations: create, verify email, resend the code, rotate the key, update, delete,
and the directory. Registration with its deposit address is
``agent_server.services.registration``; a public profile with its schedules is
``booking.profiles``; closing an account is ``agent_server.services.closing``.

``create_agent`` works in the caller's unit of work. The other commands (``verify_email``,
``resend_verification``, ``regenerate_key``, ``update_profile``, ``delete_agent``) take a fresh
``UnitOfWork``, own its transaction and commit it; mail goes out after the commit. Queries
that only read take a fresh one too. Secrets (API keys, codes) exist in clear only in the
return value of the call that created them and in the mail; they are never logged.
"""

# Long by design: the account commands share the agent row's codes, labels and key rules.

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from agent_server.accounts.keys import (
    code_context,
    hash_secret,
    new_api_key,
    new_code,
    secret_matches,
    shown_prefix,
)
from agent_server.accounts.models import (
    Agent,
    AgentKey,
    AgentLabel,
    AgentStatus,
    EmailCode,
    LabelKind,
)
from agent_server.accounts.ratelimit import hit
from agent_server.accounts.schemas import (
    DEFAULT_CURRENCY,
    LIST_FIELDS,
    PROFILE_FIELDS,
    AgentMetadata,
    RegisterAgent,
    SortBy,
    UpdateAgent,
)
from agent_server.accounts.status import READ_ONLY_STATUSES, find_agent, refuse_if_read_only
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import Forbidden, RateLimited, ValidationFailed
from agent_server.kernel.inputs import check_moment
from agent_server.kernel.logs import get_logger
from agent_server.kernel.paging import decode_keyset_cursor, encode_keyset_cursor
from agent_server.kernel.store import Database, UnitOfWork
from agent_server.mail import (
    MailDeliveryFailed,
    MailLater,
    OutboxMail,
    OutgoingMail,
    send_mail,
    send_quietly,
)

log = get_logger(__name__)

CODE_TTL = timedelta(minutes=15)
MAX_CODE_ATTEMPTS = 5
VERIFY_ENDPOINT = "POST /api/agent/verify-email"
RESEND_ENDPOINT = "POST /api/agent/resend-verification"


def pepper(settings: Settings) -> str:
    return settings.secret_pepper.get_secret_value()


def hash_api_key(settings: Settings, api_key: str) -> str:
    return hash_secret(pepper(settings), api_key)


# --- shared helpers ---------------------------------------------------------------------


async def limit_ip(
    db: Database, action: str, client_ip: str | None, limit: int, window_seconds: int = 3600
) -> None:
    """Count one ``action`` from ``client_ip`` in its own transaction; ``RateLimited`` if over."""
    if not client_ip or limit <= 0:
        return
    async with db.uow() as uow:
        decision = await hit(
            uow, f"{action}:ip:{client_ip}"[:200], limit=limit, window_seconds=window_seconds
        )
        await uow.commit()
    if not decision.allowed:
        raise RateLimited(
            f"Too many {action} requests from your address; retry in "
            f"{decision.retry_after} seconds.",
            {
                "retry_after": decision.retry_after,
                "limit": limit,
                "window_seconds": window_seconds,
            },
        )


def _labels(data: dict[str, Any]) -> dict[LabelKind, set[str]]:
    return {
        LabelKind.SKILL: {v.lower() for v in data.get("skills") or []},
        LabelKind.LANGUAGE: {v.lower() for v in data.get("languages") or []},
        LabelKind.TAG: {v.lower() for v in data.get("tags") or []},
    }


async def _write_labels(uow: UnitOfWork, agent_id: int, profile: dict[str, Any]) -> None:
    await uow.session.execute(delete(AgentLabel).where(AgentLabel.agent_id == agent_id))
    for kind, values in _labels(profile).items():
        for value in sorted(values):
            uow.session.add(AgentLabel(agent_id=agent_id, kind=kind.value, value=value))


def _search_text(agent: Agent) -> str:
    profile = agent.profile or {}
    parts = [
        agent.name,
        agent.description or "",
        " ".join(profile.get("skills") or []),
        " ".join(profile.get("tags") or []),
    ]
    return " ".join(p for p in parts if p).lower()


def _apply_metadata(agent: Agent, data: AgentMetadata, fields: set[str]) -> None:
    """Copy the sent ``fields`` of ``data`` onto the agent (None clears)."""
    dumped = data.model_dump(mode="json", include=fields)
    profile = dict(agent.profile or {})
    for name in fields:
        value = dumped[name]
        if name in PROFILE_FIELDS:
            if value is None:
                profile.pop(name, None)
            else:
                profile[name] = value
        elif name == "last_updated_at":
            agent.last_updated_at = getattr(data, name)
        else:
            setattr(agent, name, value)
    agent.profile = profile
    agent.search_text = _search_text(agent)


async def _issue_code(uow: UnitOfWork, settings: Settings, agent_id: int, reason: str) -> str:
    """Supersede the agent's live code and store a new one (hashed); returns it in clear."""
    now = uow.clock.now()
    await uow.session.execute(
        update(EmailCode)
        .where(
            EmailCode.agent_id == agent_id,
            EmailCode.used_at.is_(None),
            EmailCode.superseded_at.is_(None),
        )
        .values(superseded_at=now)
        .execution_options(synchronize_session=False)
    )
    code = new_code()
    uow.session.add(
        EmailCode(
            agent_id=agent_id,
            code_hash=hash_secret(pepper(settings), code, context=code_context(agent_id)),
            reason=reason,
            attempts=0,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
    )
    return code


def _code_mail(settings: Settings, email: str, code: str) -> OutgoingMail:
    base = settings.public_url.rstrip("/")
    endpoint = f"POST {base}/api/agent/verify-email" if base else VERIFY_ENDPOINT
    minutes = int(CODE_TTL.total_seconds() // 60)
    body = (
        f"Your Agent Server verification code is {code}\n\n"
        f"It is valid for {minutes} minutes. Verify with\n"
        f'  {endpoint}  {{"email": "{email}", "code": "{code}"}}\n\n'
        "If you did not register an agent, ignore this message.\n"
    )
    return OutgoingMail(
        to=email,
        subject="Your Agent Server verification code",
        body=body,
        kind="verification_code",
    )


async def mail_code(settings: Settings, db: Database, email: str, code: str) -> bool:
    """Mail a verification code after its commit; False if the SMTP server refused it."""
    try:
        await send_mail(settings, db, _code_mail(settings, email, code))
    except MailDeliveryFailed:
        return False
    return True


# --- registration -----------------------------------------------------------------------


@dataclass(frozen=True)
class NewAgent:
    """A new ``pending_deposit`` agent, its API key (shown once) and its verification code."""

    agent: Agent
    api_key: str
    code: str


async def create_agent(uow: UnitOfWork, settings: Settings, data: RegisterAgent) -> NewAgent:
    """Add a ``pending_deposit`` agent with its labels and a verification code, in the caller's
    entered unit of work (flushed, not committed); a taken email is ``ValidationFailed``.

    Registration as a whole (the deposit address, the commit, the mail) is
    ``agent_server.services.registration.register_agent``."""
    api_key = new_api_key()
    taken = await uow.session.scalar(select(Agent.id).where(Agent.email == data.email))
    if taken is not None:
        raise ValidationFailed.field(
            "email", "is already registered; use another email or your existing agent's key"
        )
    now = uow.clock.now()
    agent = Agent(
        name=data.name,
        email=data.email,
        email_verified=False,
        status=AgentStatus.PENDING_DEPOSIT.value,
        api_key_hash=hash_api_key(settings, api_key),
        api_key_prefix=shown_prefix(api_key),
        api_key_created_at=now,
        currency=data.currency or DEFAULT_CURRENCY,
        profile={},
        created_at=now,
        updated_at=now,
    )
    _apply_metadata(agent, data, set(data.model_fields_set) - {"name", "email", "currency"})
    uow.session.add(agent)
    try:
        await uow.session.flush()
    except IntegrityError:
        # Another registration took this email between our check and our insert.
        raise ValidationFailed.field("email", "is already registered") from None
    await _write_labels(uow, agent.id, agent.profile)
    await _record_key(uow, agent.id, agent.api_key_prefix, now, "registration")
    code = await _issue_code(uow, settings, agent.id, "registration")
    return NewAgent(agent=agent, api_key=api_key, code=code)


# --- email verification -----------------------------------------------------------------

CODE_REFUSED = (
    "is wrong, expired (15 minutes), replaced or locked (5 tries); request a new one with "
    + RESEND_ENDPOINT
)
"""The one answer to a code that does not verify an email, whatever the reason and whether
the email is registered or not, so no answer tells which emails exist."""

_NO_CODE_HASH = "0" * 64
"""Compared against when the email has no code to try, so every try does the same work."""


async def _live_code(uow: UnitOfWork, agent_id: int) -> EmailCode | None:
    return (
        await uow.session.execute(
            select(EmailCode)
            .where(
                EmailCode.agent_id == agent_id,
                EmailCode.used_at.is_(None),
                EmailCode.superseded_at.is_(None),
            )
            .order_by(EmailCode.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def _used_code(uow: UnitOfWork, agent_id: int) -> EmailCode | None:
    """The code that verified the agent's email."""
    return (
        await uow.session.execute(
            select(EmailCode)
            .where(EmailCode.agent_id == agent_id, EmailCode.used_at.is_not(None))
            .order_by(EmailCode.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


def _code_refused(email: str) -> ValidationFailed:
    return ValidationFailed(
        f"code: {CODE_REFUSED}",
        [{"field": "code", "message": CODE_REFUSED}],
        {"resend": {"endpoint": RESEND_ENDPOINT, "body": {"email": email}}},
    )


async def _agent_by_email(uow: UnitOfWork, email: str) -> Agent | None:
    """The (not deleted) agent registered with ``email``, its row locked; None without one."""
    return (
        await uow.session.execute(
            select(Agent).where(Agent.email == email, Agent.deleted_at.is_(None)).with_for_update()
        )
    ).scalar_one_or_none()


async def _count_try(uow: UnitOfWork, settings: Settings, key: str, limit: int, what: str) -> None:
    """Count one ``what`` for ``key`` (an email, registered or not) this hour; past ``limit``,
    commit the count and raise ``RateLimited``."""
    decision = await hit(uow, key[:200], limit=limit, window_seconds=3600)
    if not decision.allowed:
        await uow.commit()  # the refused hit counts too
        raise RateLimited(
            f"At most {limit} {what} an hour for one email; retry in "
            f"{decision.retry_after} seconds.",
            {"retry_after": decision.retry_after, "limit": limit, "window_seconds": 3600},
        )


def _matches(settings: Settings, code: str, code_hash: str, agent_id: int) -> bool:
    return secret_matches(pepper(settings), code, code_hash, context=code_context(agent_id))


async def verify_email(uow: UnitOfWork, settings: Settings, email: str, code: str) -> Agent:
    """Check the 6-digit ``code`` mailed to ``email`` and mark the email verified.

    Every refusal is the same ``CODE_REFUSED`` (see there). A try is compared only once it
    has taken one of the live code's 5 tries in one conditional UPDATE, so however many tries
    arrive at once, from however many processes, at most 5 are compared; that try is committed
    even though the call fails. Tries are also counted per email (registered or not):
    ``RateLimited`` past ``code_tries_per_email_per_hour``.
    """
    async with uow:
        await _count_try(
            uow, settings, f"verify-tries:{email}", settings.code_tries_per_email_per_hour, "tries"
        )
        agent = await _agent_by_email(uow, email)
        if agent is None:
            _matches(settings, code, _NO_CODE_HASH, 0)  # the same work as a real try
            await uow.commit()
            raise _code_refused(email)
        if agent.email_verified:
            # A retry with the code that verified it answers as the first call did.
            used = await _used_code(uow, agent.id)
            if not _matches(settings, code, used.code_hash if used else _NO_CODE_HASH, agent.id):
                await uow.commit()
                raise _code_refused(email)
            await uow.commit()  # nothing written but the count; keeps the agent readable
            return agent
        now = uow.clock.now()
        live = await _live_code(uow, agent.id)
        taken = None
        if live is not None and live.expires_at > now:
            # The try takes one of the code's tries first; only a try that got one is compared.
            taken = (
                await uow.session.execute(
                    update(EmailCode)
                    .where(
                        EmailCode.id == live.id,
                        EmailCode.used_at.is_(None),
                        EmailCode.superseded_at.is_(None),
                        EmailCode.attempts < MAX_CODE_ATTEMPTS,
                    )
                    .values(attempts=EmailCode.attempts + 1)
                    .returning(EmailCode.attempts)
                    .execution_options(synchronize_session=False)
                )
            ).scalar_one_or_none()
        if live is None or taken is None:
            _matches(settings, code, _NO_CODE_HASH, agent.id)
            await uow.commit()
            raise _code_refused(email)
        if not _matches(settings, code, live.code_hash, agent.id):
            await uow.commit()
            log.info(
                "agent.verification_failed",
                agent_id=agent.id,
                attempts_left=MAX_CODE_ATTEMPTS - taken,
            )
            raise _code_refused(email)
        # This transaction holds the code's row since its UPDATE: no other try can use it.
        live.used_at = now
        agent.email_verified = True
        agent.email_verified_at = now
        agent.updated_at = now
        await uow.commit()
    log.info("agent.email_verified", agent_id=agent.id)
    return agent


RESENT = (
    "If an agent registered with this email is waiting for its verification, a new code is "
    "on its way and earlier codes no longer work."
)
"""The one answer to a resend, whether the email is registered, verified or neither."""


async def resend_verification(
    uow: UnitOfWork,
    settings: Settings,
    email: str,
    *,
    client_ip: str | None = None,
    mail_later: MailLater | None = None,
) -> None:
    """Invalidate the live code and mail a new one, if an unverified agent has this email.

    Answers the same for every email: at most ``resend_per_hour`` requests an hour per email,
    counted for every email, and nothing that tells whether one was sent. ``mail_later``:
    hand the mail over to be sent after the answer (without it, it is sent before returning).
    """
    await limit_ip(uow.db, "verification", client_ip, settings.email_checks_per_ip_per_hour)
    async with uow:
        await _count_try(uow, settings, f"resend:{email}", settings.resend_per_hour, "codes")
        agent = await _agent_by_email(uow, email)
        if agent is None or agent.email_verified:
            await uow.commit()
            return
        code = await _issue_code(uow, settings, agent.id, "resend")
        await uow.commit()
    log.info("agent.verification_resent", agent_id=agent.id)
    mail = _code_mail(settings, agent.email, code)
    if mail_later is not None:
        mail_later(mail)
    else:
        await send_quietly(settings, uow.db, mail)


# --- key, profile, deletion -------------------------------------------------------------


async def _record_key(
    uow: UnitOfWork, agent_id: int, prefix: str, now: datetime, issued_by: str
) -> None:
    """Add the key history row of a key just issued, revoking the one it replaces."""
    await _revoke_keys(uow, agent_id, now, "regenerated")
    uow.session.add(AgentKey(agent_id=agent_id, prefix=prefix, issued_at=now, issued_by=issued_by))


async def _revoke_keys(uow: UnitOfWork, agent_id: int, now: datetime, reason: str) -> None:
    await uow.session.execute(
        update(AgentKey)
        .where(AgentKey.agent_id == agent_id, AgentKey.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )


class KeyAlreadyReplaced(Exception):
    """``regenerate_key(replacing=...)``: that key had been replaced already; nothing changed."""


async def regenerate_key(
    uow: UnitOfWork,
    settings: Settings,
    agent_id: int,
    *,
    replacing: str | None = None,
    issued_by: str = "owner",
) -> str:
    """A new API key for the agent; the old one stops working when this commits.

    ``replacing``: the shown prefix of the key the caller means to replace. If the agent's
    key is no longer that one (a form sent twice, or from a page shown before another
    regeneration), nothing changes and ``KeyAlreadyReplaced`` is raised: the key made in
    between, which its owner may already use, keeps working.

    A banned agent's key is not replaced (``AccountInactive``): the UPDATE names the statuses
    it may change, so a ban committed first always wins. The key history records the new key
    (``issued_by``) and revokes the old one in the same transaction.
    """
    api_key = new_api_key()
    async with uow:
        now = uow.clock.now()
        current = [Agent.api_key_prefix == replacing] if replacing is not None else []
        result = await uow.session.execute(
            update(Agent)
            .where(
                Agent.id == agent_id,
                Agent.deleted_at.is_(None),
                Agent.status.not_in([s.value for s in READ_ONLY_STATUSES]),
                *current,
            )
            .values(
                api_key_hash=hash_api_key(settings, api_key),
                api_key_prefix=shown_prefix(api_key),
                api_key_created_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            refuse_if_read_only(await find_agent(uow, agent_id))  # NotFound without the agent
            raise KeyAlreadyReplaced(replacing or "")
        await _record_key(uow, agent_id, shown_prefix(api_key), now, issued_by)
        await uow.commit()
    log.info("agent.key_regenerated", agent_id=agent_id, key_prefix=shown_prefix(api_key))
    return api_key


async def get_agent(uow: UnitOfWork, agent_id: int) -> Agent:
    """The agent with this id (not deleted); ``NotFound`` otherwise."""
    async with uow:
        agent = await find_agent(uow, agent_id)
        await uow.commit()  # read only; committing keeps the loaded agent readable
    return agent


async def update_profile(uow: UnitOfWork, agent_id: int, data: UpdateAgent) -> Agent:
    """Change the fields sent in ``data``; ``null`` clears an optional field. ``owner_email``
    only stays as it is (``Forbidden`` otherwise): the owner's codes go there.

    A banned agent is not changed (``AccountInactive``); its row is locked first, so a ban
    and a change never cross."""
    fields = set(data.model_fields_set)
    if "name" in fields and data.name is None:
        raise ValidationFailed.field(
            "name", "cannot be cleared; send a name of 1 to 255 characters"
        )
    async with uow:
        agent = await find_agent(uow, agent_id, for_update=True)
        refuse_if_read_only(agent)
        if "owner_email" in fields and data.owner_email != agent.owner_email:
            # The owner's codes (addresses, raises, forfeits) and dashboard go to this address:
            # a stolen key that could change it would hand itself the owner's controls.
            raise Forbidden(
                "owner_email cannot be changed with the agent's API key: it decides who "
                "confirms new withdrawal addresses, raised limits and a forfeit on closing.",
                {
                    "field": "owner_email",
                    "next_step": "It is set when the agent is registered. To hand the agent to "
                    "another owner, register a new agent with that owner_email and close this "
                    "one.",
                },
            )
        _apply_metadata(agent, data, fields)
        agent.updated_at = uow.clock.now()
        if fields & {"skills", "languages", "tags"}:
            await _write_labels(uow, agent.id, agent.profile)
        await uow.commit()
    return agent


async def delete_agent(
    uow: UnitOfWork,
    agent_id: int,
    *,
    settle: Callable[[UnitOfWork, int], Awaitable[None]] | None = None,
) -> None:
    """Erase the agent's personal data and revoke its key; money records stay.

    The row remains (ledger entries, deposits and bookings point at its id) with its name,
    emails, description, profile, callback URL and labels removed and its pending codes and
    outbox mail deleted. ``settle`` runs first, in the same transaction under the agent's row
    lock: it deals with money left (or refuses, and nothing is erased) and with what other
    domains keep for the agent (``services.closing.close_account`` passes one that also
    withdraws its schedules).
    """
    async with uow:
        agent = await find_agent(uow, agent_id, for_update=True)
        if settle is not None:
            await settle(uow, agent.id)
        now = uow.clock.now()
        old_email = agent.email
        agent.name = "Deleted agent"
        agent.email = f"deleted-{agent.id}@deleted.invalid"
        agent.email_verified = False
        agent.owner_email = None
        agent.description = None
        agent.callback_url = None
        agent.license = None
        agent.last_updated_at = None
        agent.profile = {}
        agent.search_text = ""
        # An unguessable value that no key hashes to (hashes are 64 hex characters).
        agent.api_key_hash = f"revoked:{secrets.token_hex(32)}"
        agent.api_key_prefix = ""
        await _revoke_keys(uow, agent.id, now, "closed")
        agent.deleted_at = now
        agent.updated_at = now
        session = uow.session
        await session.execute(delete(AgentLabel).where(AgentLabel.agent_id == agent.id))
        await session.execute(delete(EmailCode).where(EmailCode.agent_id == agent.id))
        await session.execute(delete(OutboxMail).where(OutboxMail.to_addr == old_email))
        await uow.commit()
    log.info("agent.deleted", agent_id=agent_id)


# --- directory -------------------------------------------------------


@dataclass(frozen=True)
class DirectoryQuery:
    """Filters, sorting and the page of ``GET /api/agents``."""

    query: str | None = None
    tags: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    license: str | None = None
    sort_by: SortBy = "name"
    descending: bool = False
    page: int = 1
    per_page: int = 20


@dataclass(frozen=True)
class DirectoryPage:
    agents: list[Agent]
    total: int
    page: int
    per_page: int


_SORT_COLUMNS: dict[str, Any] = {
    "name": func.lower(Agent.name),
    "created_at": Agent.created_at,
    "last_accessed_at": Agent.last_accessed_at,
    "last_updated_at": Agent.last_updated_at,
}


def _directory_conditions(q: DirectoryQuery) -> list[Any]:
    """What an agent must match to be listed: active, and every filter of ``q``."""
    conditions: list[Any] = [
        Agent.status == AgentStatus.ACTIVE.value,
        Agent.deleted_at.is_(None),
    ]
    for word in (q.query or "").lower().split()[:20]:
        conditions.append(Agent.search_text.contains(word, autoescape=True))
    if q.license:
        conditions.append(func.lower(Agent.license) == q.license.strip().lower())
    for kind, values in (
        (LabelKind.TAG, q.tags),
        (LabelKind.SKILL, q.skills),
        (LabelKind.LANGUAGE, q.languages),
    ):
        for value in {v.strip().lower() for v in values if v.strip()}:
            conditions.append(
                exists().where(
                    AgentLabel.agent_id == Agent.id,
                    AgentLabel.kind == kind.value,
                    AgentLabel.value == value,
                )
            )
    return conditions


def _directory_order(q: DirectoryQuery) -> list[Any]:
    """The sort asked for (agents without a value last), then the id the same way."""
    column = _SORT_COLUMNS[q.sort_by]
    order = column.desc() if q.descending else column.asc()
    return [order.nulls_last(), Agent.id.desc() if q.descending else Agent.id.asc()]


async def search_agents(uow: UnitOfWork, q: DirectoryQuery) -> DirectoryPage:
    """Active agents matching every given filter: all words of ``query``, every tag, skill
    and language (case-insensitive), and the license; page ``q.page`` of them."""
    conditions = _directory_conditions(q)
    async with uow:
        total = await uow.session.scalar(select(func.count()).select_from(Agent).where(*conditions))
        rows = await uow.session.execute(
            select(Agent)
            .where(*conditions)
            .order_by(*_directory_order(q))
            .limit(q.per_page)
            .offset((q.page - 1) * q.per_page)
        )
        agents = list(rows.scalars())
        await uow.commit()  # read only; committing keeps the loaded agents readable
    return DirectoryPage(agents=agents, total=int(total or 0), page=q.page, per_page=q.per_page)


@dataclass(frozen=True)
class DirectoryCursorPage:
    agents: list[Agent]
    total: int
    next_cursor: str | None


MAX_DIRECTORY_PAGE = 100
_TIME_SORTS = frozenset({"created_at", "last_accessed_at", "last_updated_at"})


def _after(q: DirectoryQuery, key_text: str | None, last_id: int) -> Any:
    """Agents after the one with id ``last_id`` and sort value ``key_text`` in ``q``'s order
    (agents without a value come last, by id)."""
    column = _SORT_COLUMNS[q.sort_by]
    key: Any = key_text
    if key_text is not None and q.sort_by in _TIME_SORTS:
        try:
            key = check_moment(datetime.fromisoformat(key_text))
        except ValueError:
            raise ValidationFailed.field(
                "cursor", "pass the next_cursor of the previous page unchanged"
            ) from None
    later_id = Agent.id < last_id if q.descending else Agent.id > last_id
    if key is None:
        return and_(column.is_(None), later_id)
    beyond = column < key if q.descending else column > key
    return or_(beyond, and_(column == key, later_id), column.is_(None))


async def search_agents_after(
    uow: UnitOfWork, q: DirectoryQuery, *, cursor: str | None = None, limit: int = 20
) -> DirectoryCursorPage:
    """Active agents matching every filter of ``q`` (as ``search_agents``), ``limit`` of them
    after ``cursor`` in ``q``'s order, and the cursor of the page after them (None at the end).

    The cursor holds the sort value and id of the last agent shown, so agents added meanwhile
    neither shift nor repeat a page; it is refused (naming ``cursor``) with another sorting."""
    if not 1 <= limit <= MAX_DIRECTORY_PAGE:
        raise ValidationFailed.field("limit", f"give a page size from 1 to {MAX_DIRECTORY_PAGE}")
    order = ("-" if q.descending else "") + q.sort_by
    position = decode_keyset_cursor(cursor, order)
    conditions = _directory_conditions(q)
    where = conditions + ([_after(q, *position)] if position is not None else [])
    column = _SORT_COLUMNS[q.sort_by]
    async with uow:
        total = await uow.session.scalar(select(func.count()).select_from(Agent).where(*conditions))
        rows = await uow.session.execute(
            select(Agent, column.label("sort_key"))
            .where(*where)
            .order_by(*_directory_order(q))
            .limit(limit + 1)
        )
        found = [(agent, key) for agent, key in rows.all()]
        await uow.commit()  # read only; committing keeps the loaded agents readable
    shown = found[:limit]
    next_cursor = None
    if len(found) > limit and shown:
        last, key = shown[-1]
        text = key.isoformat() if isinstance(key, datetime) else key
        next_cursor = encode_keyset_cursor(order, text, last.id)
    return DirectoryCursorPage([agent for agent, _ in shown], int(total or 0), next_cursor)


def profile_dict(agent: Agent) -> dict[str, Any]:
    """The seed's descriptive fields of an agent, ``None`` or empty lists where unset."""
    profile = agent.profile or {}
    out: dict[str, Any] = {name: profile.get(name) for name in PROFILE_FIELDS}
    for name in LIST_FIELDS:
        out[name] = out[name] or []
    return out


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
