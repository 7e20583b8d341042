"""Signing in to the dashboard: one-time codes by mail, server-side sessions, CSRF tokens.

    async def request_code(db, settings, email, *, client_ip=None, mail_later=None)
        Mail a 6-digit code to ``email`` when it belongs to someone who may sign in (an agent's
        owner or the agent itself, a specialist, an operator); otherwise send nothing but do
        and answer the same, so neither the form nor the tries that follow tell which emails
        exist. At most ``CODES_PER_HOUR`` codes an hour per email.
    async def request_signup(db, settings, name, email, *, client_ip=None, mail_later=None)
        Mail a sign-up code to any email, under the same limits as sign-in codes and with the
        same answer: the right code opens a session and, for an email without a specialist
        profile, creates one with ``name`` (an existing profile is only signed in to).
    async def verify_code(db, settings, email, code, *, client_ip=None) -> str
        The new session's token (for the cookie) when the code is right; ``ValidationFailed``
        on ``code`` otherwise. Codes expire after 15 minutes and lock after 5 tries; tries are
        limited per email and per client address too.
    async def session_email(db, settings, token) -> str | None
    async def end_session(db, settings, token) -> None
    def csrf_token(settings, token) -> str;  def csrf_ok(settings, token, sent) -> bool

Codes, session tokens and CSRF tokens are never stored or logged in clear: codes and tokens
are kept as peppered HMACs; a session's CSRF token is an HMAC of its token, so it needs no
storage and changes with every session. Races on one code are settled by the database: a try
is compared only after it has taken one of the code's tries in a conditional UPDATE, and the
row stays locked until the try's transaction ends, so two right answers at once open one
session and many wrong ones at once are compared at most 5 times.
"""

# Long by design: sign-in and sign-up codes share one tries-and-lease scheme.

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent_server.accounts.keys import hash_secret, new_code
from agent_server.accounts.models import Agent
from agent_server.accounts.ratelimit import hit
from agent_server.accounts.service import limit_ip, pepper
from agent_server.booking.models import Specialist
from agent_server.booking.search.text import specialist_search_text
from agent_server.dashboard.models import DashboardSession, SignInCode
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import RateLimited, ValidationFailed
from agent_server.kernel.inputs import check_text, require
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database, UnitOfWork
from agent_server.mail import MailLater, OutgoingMail, masked, send_quietly

log = get_logger(__name__)

CODE_TTL = timedelta(minutes=15)
MAX_CODE_ATTEMPTS = 5
CODES_PER_HOUR = 5
SESSION_TTL = timedelta(hours=12)
SESSION_COOKIE = "as_session"


def normalize_email(raw: str) -> str:
    """A lower-cased, validated email; ``ValidationFailed`` on ``email`` otherwise."""
    text = (raw or "").strip()
    if not text or len(text) > 255 or "\x00" in text:
        raise ValidationFailed.field("email", "enter the email address of your account")
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise ValidationFailed.field(
            "email", "is not a valid email address, e.g. owner@example.com"
        ) from None


def _code_hash(settings: Settings, email: str, code: str) -> str:
    return hash_secret(pepper(settings), code, context=f"dashboard-code:{email}")


def _token_hash(settings: Settings, token: str) -> str:
    return hash_secret(pepper(settings), token, context="dashboard-session")


def csrf_token(settings: Settings, token: str) -> str:
    """The CSRF token of the session whose cookie holds ``token``."""
    return hash_secret(pepper(settings), token, context="dashboard-csrf")


def csrf_ok(settings: Settings, token: str, sent: str | None) -> bool:
    """Whether ``sent`` is the CSRF token of the session ``token``, in constant time."""
    return bool(sent) and hmac.compare_digest(csrf_token(settings, token), str(sent))


async def may_sign_in(uow: UnitOfWork, settings: Settings, email: str) -> bool:
    """Whether ``email`` owns an agent, is an agent's email, a specialist's, or an operator's."""
    if email in operator_emails(settings):
        return True
    agent = await uow.session.scalar(
        select(Agent.id)
        .where(Agent.deleted_at.is_(None), or_(Agent.owner_email == email, Agent.email == email))
        .limit(1)
    )
    if agent is not None:
        return True
    specialist = await uow.session.scalar(
        select(Specialist.id).where(func.lower(Specialist.email) == email).limit(1)
    )
    return specialist is not None


def operator_emails(settings: Settings) -> frozenset[str]:
    return frozenset(e.strip().lower() for e in settings.operator_emails if e.strip())


@dataclass(frozen=True)
class CodeRequest:
    """What the sign-in form tells the person: the (normalized) email. The same for every
    email, whether anyone may sign in with it or not."""

    email: str


def _code_mail(settings: Settings, email: str, code: str) -> OutgoingMail:
    minutes = int(CODE_TTL.total_seconds() // 60)
    base = settings.public_url.rstrip("/")
    where = f" at {base}/" if base else ""
    body = (
        f"Your Agent Server dashboard sign-in code is {code}\n\n"
        f"Enter it on the sign-in page{where} within {minutes} minutes.\n"
        "If you did not ask to sign in, ignore this message.\n"
    )
    return OutgoingMail(
        to=email,
        subject="Your Agent Server sign-in code",
        body=body,
        kind="dashboard_sign_in_code",
    )


async def request_code(
    db: Database,
    settings: Settings,
    raw_email: str,
    *,
    client_ip: str | None = None,
    mail_later: MailLater | None = None,
) -> CodeRequest:
    """Issue and mail a sign-in code (see the module docstring).

    Every email gets the same treatment up to the mail: the per-hour count, and a code row
    (for an email nobody signs in with, one no code matches), so the answer, its timing and
    the later tries of a code cannot tell which emails exist. ``mail_later``: hand the mail
    over to be sent after the answer (without it, it is sent before returning).
    """
    email = normalize_email(raw_email)
    await limit_ip(db, "dashboard sign-in", client_ip, settings.email_checks_per_ip_per_hour)
    async with db.uow() as uow:
        decision = await hit(
            uow, f"dashboard-code:{email}"[:200], limit=CODES_PER_HOUR, window_seconds=3600
        )
        if not decision.allowed:
            await uow.commit()  # the refused hit counts too
            raise RateLimited(
                f"At most {CODES_PER_HOUR} codes an hour; retry in {decision.retry_after} seconds.",
                {"retry_after": decision.retry_after},
            )
        known = await may_sign_in(uow, settings, email)
        now = uow.clock.now()
        await _supersede(uow, email, now)
        code = new_code()
        # For an unknown email, the hash of a secret that is never shown: no code matches it.
        hashed = _code_hash(settings, email, code if known else secrets.token_urlsafe(32))
        uow.session.add(
            SignInCode(
                email=email,
                code_hash=hashed,
                attempts=0,
                created_at=now,
                expires_at=now + CODE_TTL,
            )
        )
        await uow.commit()
    if not known:
        log.info("dashboard.code_not_sent", to=masked(email))
        return CodeRequest(email)
    mail = _code_mail(settings, email, code)
    if mail_later is not None:
        mail_later(mail)
    else:
        await send_quietly(settings, db, mail)
    log.info("dashboard.code_issued", to=masked(email))
    return CodeRequest(email)


def _signup_mail(settings: Settings, email: str, code: str, *, known: bool) -> OutgoingMail:
    minutes = int(CODE_TTL.total_seconds() // 60)
    first = (
        "This email already has a specialist profile on Agent Server: the code signs you in to it."
        if known
        else "Enter the code on the sign-up page to create your specialist profile."
    )
    body = (
        f"Your Agent Server sign-up code is {code}\n\n{first} It is valid for {minutes} "
        "minutes.\nIf you did not ask to sign up, ignore this message.\n"
    )
    return OutgoingMail(
        to=email, subject="Your Agent Server sign-up code", body=body, kind="dashboard_sign_up_code"
    )


def normalize_name(raw: str) -> str:
    """A specialist's name as given at sign-up; ``ValidationFailed`` on ``name`` otherwise."""
    name = " ".join(require("name", check_text, raw or "").split())
    if not name:
        raise ValidationFailed.field("name", "enter your name as agents should see it")
    if len(name) > 255:
        raise ValidationFailed.field("name", "use at most 255 characters")
    return name


async def request_signup(
    db: Database,
    settings: Settings,
    raw_name: str,
    raw_email: str,
    *,
    client_ip: str | None = None,
    mail_later: MailLater | None = None,
) -> CodeRequest:
    """Issue and mail a sign-up code (see the module docstring).

    Every email may sign up, so every one gets a code; the answer is the sign-in's answer. A
    code counts against the same hourly limit as sign-in codes and replaces any live one.
    """
    name = normalize_name(raw_name)
    email = normalize_email(raw_email)
    await limit_ip(db, "dashboard sign-in", client_ip, settings.email_checks_per_ip_per_hour)
    async with db.uow() as uow:
        decision = await hit(
            uow, f"dashboard-code:{email}"[:200], limit=CODES_PER_HOUR, window_seconds=3600
        )
        if not decision.allowed:
            await uow.commit()  # the refused hit counts too
            raise RateLimited(
                f"At most {CODES_PER_HOUR} codes an hour; retry in {decision.retry_after} seconds.",
                {"retry_after": decision.retry_after},
            )
        known = await _specialist_id(uow, email) is not None
        now = uow.clock.now()
        await _supersede(uow, email, now)
        code = new_code()
        uow.session.add(
            SignInCode(
                email=email,
                code_hash=_code_hash(settings, email, code),
                attempts=0,
                created_at=now,
                expires_at=now + CODE_TTL,
                signup_name=name,
            )
        )
        await uow.commit()
    mail = _signup_mail(settings, email, code, known=known)
    if mail_later is not None:
        mail_later(mail)
    else:
        await send_quietly(settings, db, mail)
    log.info("dashboard.signup_code_issued", to=masked(email))
    return CodeRequest(email)


async def _specialist_id(uow: UnitOfWork, email: str) -> int | None:
    found = await uow.session.scalar(
        select(Specialist.id).where(func.lower(Specialist.email) == email).limit(1)
    )
    return int(found) if found is not None else None


async def _supersede(uow: UnitOfWork, email: str, now: datetime) -> None:
    await uow.session.execute(
        update(SignInCode)
        .where(
            SignInCode.email == email,
            SignInCode.used_at.is_(None),
            SignInCode.superseded_at.is_(None),
        )
        .values(superseded_at=now)
        .execution_options(synchronize_session=False)
    )


async def _open_profile(uow: UnitOfWork, email: str, name: str) -> None:
    """The specialist profile of a sign-up, unless the email has one already. The unique
    email settles a race with another writer of the same profile: the first one stands."""
    if await _specialist_id(uow, email) is not None:
        return
    now = uow.clock.now()
    values = {
        "name": name,
        "title": "",
        "about": "",
        "city": "",
        "country": "",
        "timezone": "UTC",
        "languages": [],
        "skills": [],
        "education": [],
        "rate_currency": "USD",
        "rating": 0.0,
        "review_count": 0,
        "email": email,
        "search_text": specialist_search_text(name, "", "", []),
        "created_at": now,
        "updated_at": now,
    }
    insert = sqlite_insert if uow.db.is_sqlite else pg_insert
    await uow.session.execute(
        insert(Specialist).values(**values).on_conflict_do_nothing(index_elements=["email"])
    )
    log.info("dashboard.specialist_signed_up", to=masked(email))


def _code_error(message: str) -> ValidationFailed:
    return ValidationFailed.field("code", message)


async def verify_code(
    db: Database, settings: Settings, raw_email: str, code: str, *, client_ip: str | None = None
) -> str:
    """Check ``code`` for ``email`` and open a session; the session token (see above).

    A try is compared only once it has taken one of the code's 5 tries in one conditional
    UPDATE, so however many tries arrive at once, from however many processes, at most 5 are
    ever compared. Tries are also counted per client address and per email (registered or
    not), across processes; ``RateLimited`` past either limit.
    """
    email = normalize_email(raw_email)
    code = (code or "").strip()
    if len(code) != 6 or not code.isdigit():
        raise _code_error("enter the 6 digits from the mail")
    await limit_ip(db, "dashboard sign-in code", client_ip, settings.email_checks_per_ip_per_hour)
    async with db.uow() as uow:
        limit = settings.code_tries_per_email_per_hour
        decision = await hit(
            uow, f"dashboard-code-tries:{email}"[:200], limit=limit, window_seconds=3600
        )
        if not decision.allowed:
            await uow.commit()  # the refused hit counts too
            raise RateLimited(
                f"At most {limit} code tries an hour for one email; retry in "
                f"{decision.retry_after} seconds.",
                {"retry_after": decision.retry_after},
            )
        live = (
            await uow.session.execute(
                select(
                    SignInCode.id,
                    SignInCode.code_hash,
                    SignInCode.expires_at,
                    SignInCode.signup_name,
                )
                .where(
                    SignInCode.email == email,
                    SignInCode.used_at.is_(None),
                    SignInCode.superseded_at.is_(None),
                )
                .order_by(SignInCode.id.desc())
                .limit(1)
            )
        ).one_or_none()
        now = uow.clock.now()
        if live is None:
            await uow.commit()
            raise _code_error("this code is not valid; ask for a new one")
        if live.expires_at <= now:
            await uow.commit()
            raise _code_error("this code has expired (codes last 15 minutes); ask for a new one")
        # The try takes one of the code's tries first; only a try that got one is compared.
        attempts = (
            await uow.session.execute(
                update(SignInCode)
                .where(
                    SignInCode.id == live.id,
                    SignInCode.used_at.is_(None),
                    SignInCode.superseded_at.is_(None),
                    SignInCode.attempts < MAX_CODE_ATTEMPTS,
                )
                .values(attempts=SignInCode.attempts + 1)
                .returning(SignInCode.attempts)
                .execution_options(synchronize_session=False)
            )
        ).scalar_one_or_none()
        if attempts is None:
            await uow.commit()
            raise _code_error(
                f"this code is locked after {MAX_CODE_ATTEMPTS} wrong tries, or was just used "
                "or replaced; ask for a new one"
            )
        if not hmac.compare_digest(_code_hash(settings, email, code), live.code_hash):
            await uow.commit()
            left = MAX_CODE_ATTEMPTS - attempts
            log.info("dashboard.code_wrong", to=masked(email), attempts_left=left)
            if left == 0:
                raise _code_error(
                    f"wrong code; it is now locked after {MAX_CODE_ATTEMPTS} tries, "
                    "ask for a new one"
                )
            raise _code_error(f"wrong code; {left} tries left")
        # This transaction holds the code's row since its UPDATE: no other try can use it.
        await uow.session.execute(
            update(SignInCode)
            .where(SignInCode.id == live.id)
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if live.signup_name:
            await _open_profile(uow, email, live.signup_name)
        token = secrets.token_urlsafe(32)
        uow.session.add(
            DashboardSession(
                token_hash=_token_hash(settings, token),
                email=email,
                created_at=now,
                expires_at=now + SESSION_TTL,
            )
        )
        # Expired sessions of this person are of no use to anyone.
        await uow.session.execute(
            delete(DashboardSession).where(
                DashboardSession.email == email, DashboardSession.expires_at <= now
            )
        )
        await uow.commit()
    log.info("dashboard.signed_in", to=masked(email))
    return token


async def session_email(db: Database, settings: Settings, token: str | None) -> str | None:
    """The email of the live session whose cookie holds ``token``, else None."""
    if not token or len(token) > 200:
        return None
    async with db.uow() as uow:
        row = (
            await uow.session.execute(
                select(DashboardSession.email, DashboardSession.expires_at).where(
                    DashboardSession.token_hash == _token_hash(settings, token)
                )
            )
        ).one_or_none()
        now = uow.clock.now()
    if row is None or row.expires_at <= now:
        return None
    return str(row.email)


async def end_session(db: Database, settings: Settings, token: str | None) -> None:
    """Sign out: the session's row is deleted, so its cookie opens nothing any more."""
    if not token:
        return
    async with db.uow() as uow:
        await uow.session.execute(
            delete(DashboardSession).where(
                DashboardSession.token_hash == _token_hash(settings, token)
            )
        )
        await uow.commit()
