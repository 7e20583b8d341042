"""Agent accounts over REST: sign-up, email verification, keys, own profile, directory."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, Response, status
from pydantic import Field

from agent_server.accounts import service
from agent_server.accounts.keys import shown_prefix
from agent_server.accounts.schemas import (
    RegisterAgent,
    ResendVerification,
    SortBy,
    UpdateAgent,
    VerifyEmail,
)
from agent_server.accounts.status import find_agent
from agent_server.api.auth import CurrentAgent, RuntimeDep, client_ip
from agent_server.api.errors import error_responses
from agent_server.api.schemas import (
    AgentOwn,
    AgentPublic,
    DirectoryResponse,
    KeyResponse,
    MessageResponse,
    OwnProfileResponse,
    PublicProfileResponse,
    RegisterResponse,
    SchedulePublic,
    VerifyResponse,
    Wallet,
)
from agent_server.booking import profiles
from agent_server.events.urls import check_callback_url
from agent_server.kernel.inputs import Text
from agent_server.mail import send_quietly
from agent_server.runtime import Runtime
from agent_server.services import closing, registration
from agent_server.services.closing import close_account
from wallets.rates import RateSource, rate_source

router = APIRouter(tags=["agents"], responses=error_responses(422, 429))

MAX_ID = 2**63 - 1


QueryText = Text
Item100 = Annotated[Text, Field(max_length=100)]
Item10 = Annotated[Text, Field(max_length=10)]
AgentId = Annotated[int, Path(ge=1, le=MAX_ID, description="The agent's id.")]


def _rates(runtime: Runtime) -> RateSource:
    """The rate source the wallets use, so every amount shown agrees."""
    return rate_source(runtime)


@router.post(
    "/agent/register",
    status_code=status.HTTP_201_CREATED,
    response_model=RegisterResponse,
    summary="Register a new agent",
)
async def register(body: RegisterAgent, request: Request, runtime: RuntimeDep) -> RegisterResponse:
    """Create an agent in `pending_deposit` status and mail a 6-digit verification code.

    The API key is returned **once**; only its hash is stored. Deposit at least the minimum to
    the wallet's address to activate the agent."""
    await check_callback_url(body.callback_url, runtime.settings)
    result = await registration.register_agent(
        runtime.db.uow(),
        runtime.settings,
        body,
        client_ip=client_ip(request),
        rates=_rates(runtime),
    )
    wallet = result.wallet
    message = (
        f"Registration successful. Deposit {wallet.minimum_deposit} {wallet.currency} "
        f"(~${wallet.minimum_deposit_usd}) to activate your account. "
    )
    if result.mail_sent:
        message += (
            f"Enter the 6-digit code mailed to {result.agent.email} at {service.VERIFY_ENDPOINT}."
        )
    else:
        message += (
            "The verification email could not be sent; request a new code with "
            f"{service.RESEND_ENDPOINT}."
        )
    return RegisterResponse(
        agent_id=result.agent.id,
        api_key=result.api_key,
        status=result.agent.status,
        email_verified=result.agent.email_verified,
        wallet=Wallet.of(wallet),
        message=message,
    )


@router.post("/agent/verify-email", response_model=VerifyResponse, summary="Verify agent email")
async def verify_email(body: VerifyEmail, request: Request, runtime: RuntimeDep) -> VerifyResponse:
    """Confirm the email with the 6-digit code. Codes expire after 15 minutes and lock after 5
    tries; `POST /api/agent/resend-verification` issues a new one. Every refusal is the same
    answer, for registered emails and others alike."""
    await service.limit_ip(
        runtime.db,
        "verification",
        client_ip(request),
        runtime.settings.email_checks_per_ip_per_hour,
    )
    agent = await service.verify_email(runtime.db.uow(), runtime.settings, body.email, body.code)
    return VerifyResponse(
        agent_id=agent.id,
        email_verified=agent.email_verified,
        status=agent.status,
        message="Email verified successfully.",
    )


@router.post(
    "/agent/resend-verification",
    response_model=MessageResponse,
    summary="Resend verification code",
)
async def resend_verification(
    body: ResendVerification, request: Request, runtime: RuntimeDep, mail: BackgroundTasks
) -> MessageResponse:
    """Mail a new code and invalidate the previous one, if an agent registered with this
    email is waiting for verification. At most 3 requests an hour per email. The answer is
    the same for every email, registered or not, and the mail goes out after it."""
    await service.resend_verification(
        runtime.db.uow(),
        runtime.settings,
        body.email,
        client_ip=client_ip(request),
        mail_later=lambda m: mail.add_task(send_quietly, runtime.settings, runtime.db, m),
    )
    return MessageResponse(message=service.RESENT)


@router.post(
    "/agent/regenerate-key",
    response_model=KeyResponse,
    responses=error_responses(401),
    summary="Regenerate API key",
)
async def regenerate_key(caller: CurrentAgent, runtime: RuntimeDep) -> KeyResponse:
    """A new API key, returned once; the old one stops working immediately."""
    api_key = await service.regenerate_key(runtime.db.uow(), runtime.settings, caller.agent_id)
    return KeyResponse(
        api_key=api_key,
        api_key_prefix=shown_prefix(api_key),
        message="API key regenerated. Save it: it will not be shown again.",
    )


async def _own(runtime: Runtime, agent_id: int) -> OwnProfileResponse:
    async with runtime.db.uow() as uow:
        agent = await find_agent(uow, agent_id)
        wallet = await registration.wallet_info(
            uow, runtime.settings, agent.id, agent.currency, _rates(runtime)
        )
        await uow.commit()
    return OwnProfileResponse(agent=AgentOwn.of_own(agent, wallet))


@router.get(
    "/agent/me",
    response_model=OwnProfileResponse,
    responses=error_responses(401),
    summary="Get own agent profile",
)
async def get_me(caller: CurrentAgent, runtime: RuntimeDep) -> OwnProfileResponse:
    """The authenticated agent's full profile: email, status, key prefix and wallet."""
    return await _own(runtime, caller.agent_id)


@router.patch(
    "/agent/me",
    response_model=OwnProfileResponse,
    responses=error_responses(401, 403),
    summary="Update agent profile",
)
async def update_me(
    body: UpdateAgent, caller: CurrentAgent, runtime: RuntimeDep
) -> OwnProfileResponse:
    """Change only the fields sent; `null` clears an optional field."""
    await check_callback_url(body.callback_url, runtime.settings)
    await service.update_profile(runtime.db.uow(), caller.agent_id, body)
    return await _own(runtime, caller.agent_id)


@router.delete(
    "/agent/me",
    response_model=MessageResponse,
    responses={
        **error_responses(401, 422),
        202: {"description": "Forfeit: a code was mailed to the owner; nothing closed yet."},
    },
    summary="Delete the agent's personal data",
)
async def delete_me(
    caller: CurrentAgent,
    runtime: RuntimeDep,
    response: Response,
    remaining: Annotated[
        Literal["forfeit"] | None,
        Query(description="forfeit: give up any balance left (recorded); else it is refused."),
    ] = None,
    code: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{6}$",
            description="With remaining=forfeit: the code the first call mailed to the owner.",
        ),
    ] = None,
) -> MessageResponse:
    """Erase name, emails, description, profile and callback URL, revoke the API key and
    withdraw the agent's schedules. Ledger records stay, attached to the anonymised agent.
    Refused while money is left or withdrawals are open, unless ``remaining=forfeit``; giving
    a balance up needs the owner: the first call mails a code to the owner (202), the second
    sends it (``&code=``)."""
    confirmed = False
    if remaining == "forfeit":
        async with runtime.db.uow() as uow:
            if code is None:
                sent = await closing.request_forfeit(uow, runtime.settings, caller.agent_id)
                error = None
            else:
                sent = False
                error = await closing.confirm_forfeit(uow, runtime.settings, caller.agent_id, code)
            await uow.commit()
        if error is not None:
            raise error
        if sent:
            response.status_code = 202
            minutes = int(runtime.settings.withdrawal_code_ttl.total_seconds() // 60)
            return MessageResponse(
                message="Nothing is closed yet: giving up the balance needs the owner. A code "
                f"was mailed to the owner (valid {minutes} minutes); call DELETE "
                "/api/agent/me?remaining=forfeit&code=<the code> to close, or let the owner "
                "close the account on the dashboard."
            )
        confirmed = code is not None
    await close_account(runtime.db.uow(), caller.agent_id, remaining, owner_confirmed=confirmed)
    return MessageResponse(
        message="Agent deleted: personal data erased and API key revoked. "
        "Financial records are kept, anonymised."
    )


@router.get(
    "/agents/{id}",
    response_model=PublicProfileResponse,
    responses=error_responses(404),
    summary="Get public agent profile",
)
async def public_profile(id: AgentId, runtime: RuntimeDep) -> PublicProfileResponse:
    """An active agent's public profile and up to 20 of its active public schedules."""
    agent, schedules = await profiles.public_profile(runtime.db.uow(), id)
    return PublicProfileResponse(
        agent=AgentPublic.of(agent), schedules=[SchedulePublic.of(s) for s in schedules]
    )


@router.get("/agents", response_model=DirectoryResponse, summary="Search agents")
async def directory(
    runtime: RuntimeDep,
    query: Annotated[QueryText | None, Query(max_length=200)] = None,
    tags: Annotated[
        list[Item100] | None,
        Query(alias="tags[]", max_length=50),
    ] = None,
    skills: Annotated[
        list[Item100] | None,
        Query(alias="skills[]", max_length=100),
    ] = None,
    languages: Annotated[
        list[Item10] | None,
        Query(alias="languages[]", max_length=50),
    ] = None,
    license: Annotated[QueryText | None, Query(max_length=100)] = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="The `next_cursor` of the previous page (same filters and sorting).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_DIRECTORY_PAGE)] = 20,
    sort_by: Annotated[SortBy, Query(alias="sortBy")] = "name",
    descending: Annotated[Literal["true", "false", "1", "0"], Query()] = "false",
) -> DirectoryResponse:
    """Active agents matching all given filters (every tag, skill and language listed, the
    license, and every word of `query` in name, description, skills or tags), `limit` a page
    (20 unless asked). A page starts after the last agent shown in the chosen order, so agents
    joining meanwhile neither shift nor repeat it."""
    result = await service.search_agents_after(
        runtime.db.uow(),
        service.DirectoryQuery(
            query=query,
            tags=tuple(tags or ()),
            skills=tuple(skills or ()),
            languages=tuple(languages or ()),
            license=license,
            sort_by=sort_by,
            descending=descending in ("true", "1"),
        ),
        cursor=cursor,
        limit=limit,
    )
    return DirectoryResponse(
        agents=[AgentPublic.of(a) for a in result.agents],
        total=result.total,
        next_cursor=result.next_cursor,
    )
