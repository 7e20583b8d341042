"""The ``agent-server`` command line."""

# Long by design: one Typer app, one thin command per operator task.

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from agent_server.kernel.config import Settings, get_settings
from agent_server.kernel.logs import configure_logging
from agent_server.kernel.recursion import restore_recursion_limit

if TYPE_CHECKING:
    from agent_server.mail import OutboxMail
    from agent_server.runtime import Runtime

T = TypeVar("T")

app = typer.Typer(
    help="Agent Server: MCP tools for AI agents to find and book human experts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
admin_app = typer.Typer(help="Operator commands: agents, statuses, balances.", no_args_is_help=True)
dev_app = typer.Typer(
    help="Development helpers: the embedded local chains and the mail outbox.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(dev_app, name="dev")


def _print_version(value: bool) -> None:
    if value:
        from agent_server import __version__

        typer.echo(f"agent-server {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Agent Server: MCP tools for AI agents to find and book human experts."""


def _settings(*, server: bool = False) -> Settings:
    """The settings, with logging set up by them (``server``: for the life of the process)."""
    restore_recursion_limit()  # every command parses input; see agent_server.kernel.recursion
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, for_good=server)
    return settings


def _database_problem(settings: Settings) -> str | None:
    """Why the configured database cannot serve (see ``store.migrate.database_problem``)."""
    from agent_server.kernel.store import make_engine
    from agent_server.kernel.store.migrate import database_problem

    async def check() -> str | None:
        engine = make_engine(settings.database_url)
        try:
            return await database_problem(engine, settings.database_url)
        finally:
            await engine.dispose()

    return asyncio.run(check())


def _require_database(settings: Settings) -> None:
    """Exit with one line on stderr unless the database is reachable and migrated: a server
    on a missing or empty database would answer every call with an error."""
    problem = _database_problem(settings)
    if problem:
        typer.echo(f"agent-server: {problem}", err=True)
        raise typer.Exit(1)


def _not_yet(what: str) -> None:
    typer.echo(f"{what} is not available in this version yet.", err=True)
    raise typer.Exit(2)


ToolsetsOption = Annotated[
    str | None,
    typer.Option(
        "--toolsets",
        help="Comma-separated MCP toolsets to serve: discovery,booking,wallet (default: all).",
    ),
]
ReadOnlyOption = Annotated[
    bool, typer.Option("--read-only", help="Serve only the MCP tools that change nothing.")
]


def _toolsets(value: str | None) -> list[str] | None:
    from agent_server.mcp.registry import TOOLSETS

    if not value:
        return None
    chosen = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in TOOLSETS]
    if unknown:
        raise typer.BadParameter(
            f"unknown toolset(s) {', '.join(unknown)}; choose from {', '.join(TOOLSETS)}",
            param_hint="--toolsets",
        )
    return chosen


def _free_port(host: str) -> int:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (0 picks a free one).")] = None,
    toolsets: ToolsetsOption = None,
    read_only: ReadOnlyOption = False,
) -> None:
    """Serve MCP at /mcp, REST at /api, the dashboard at / and iCal at /calendar."""
    import uvicorn

    from agent_server.app import create_app
    from agent_server.booking.search.warm import warm_statements
    from agent_server.runtime import Runtime

    settings = _settings(server=True)
    chosen = _toolsets(toolsets)
    _require_database(settings)
    bind_host = host or settings.host
    proxies = [p.strip() for p in settings.forwarded_allow_ips.split(",") if p.strip()]
    chosen_port = settings.port if port is None else port
    if chosen_port == 0:  # the URL the server names (OAuth metadata) needs the real port
        chosen_port = _free_port(bind_host)
    runtime = Runtime.create(settings)
    # Searches meet their statements compiled: a new shape costs milliseconds per call.
    warm_statements(runtime.db)
    uvicorn.run(
        create_app(
            runtime,
            bind_host=bind_host,
            port=chosen_port,
            toolsets=chosen,
            read_only=read_only,
            settle=True,
        ),
        host=bind_host,
        port=chosen_port,
        log_config=None,
        access_log=False,
        # X-Forwarded-For only from the configured proxies: from anyone else it would let a
        # client choose the address its per-address limits are counted against.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
    )


@app.command()
def stdio(
    toolsets: ToolsetsOption = None,
    read_only: ReadOnlyOption = False,
) -> None:
    """Serve MCP over stdio; the API key comes from AGENT_SERVER_API_KEY."""
    import anyio

    from agent_server.kernel.heap import settle_after_start
    from agent_server.mcp.server import build_mcp_server
    from agent_server.runtime import Runtime

    settings = _settings(server=True)
    chosen = _toolsets(toolsets)
    key = settings.api_key.get_secret_value() if settings.api_key else None
    if not key:
        typer.echo(
            "Set AGENT_SERVER_API_KEY to your agent's API key (from POST /api/agent/register).",
            err=True,
        )
        raise typer.Exit(2)
    _require_database(settings)
    runtime = Runtime.create(settings)
    server = build_mcp_server(
        runtime, api_key_source=lambda: key, toolsets=chosen, read_only=read_only
    )

    restore_recursion_limit()  # after the imports above: stdin lines are untrusted JSON

    async def run() -> None:
        settle_after_start()  # this process serves one client for its life (kernel.heap)
        try:
            await server.run_stdio_async()
        finally:
            await runtime.close()

    anyio.run(run)


@app.command("mcp-config")
def mcp_config(
    client: Annotated[
        str,
        typer.Option(
            "--client", help="claude-desktop, claude-code, cursor or vscode.", show_default=False
        ),
    ],
    http: Annotated[
        bool,
        typer.Option(
            "--http/--stdio",
            help="Connect over streamable HTTP to a running `serve`, or start `stdio` (default).",
        ),
    ] = False,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="The agent's API key (default: a placeholder to replace)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="The MCP endpoint for --http (default: PUBLIC_URL, else http://HOST:PORT/mcp).",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="The server's name in the client.")] = (
        "agent-server"
    ),
    as_json: Annotated[
        bool,
        typer.Option("--json", help="claude-code: the .mcp.json document, not the command."),
    ] = False,
) -> None:
    """Print a client's configuration entry for this install: absolute paths, the client's
    own file shape (Claude Code: a `claude mcp add-json` command line)."""
    from agent_server.mcp.client_config import CLIENTS, entry, render

    chosen = next((c for c in CLIENTS if c == client), None)
    if chosen is None:
        raise typer.BadParameter(f"choose one of {', '.join(CLIENTS)}", param_hint="--client")
    settings = _settings()
    document = entry(chosen, http=http, settings=settings, api_key=api_key, url=url, name=name)
    typer.echo(render(chosen, document, as_json=as_json))
    problem = None if http else _database_problem(settings)
    if problem:
        typer.echo(f"warning: the server this starts will refuse to run: {problem}", err=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations to the configured database."""
    from agent_server.kernel.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("refresh-blocks")
def db_refresh_blocks(
    force: Annotated[
        bool, typer.Option("--force", help="Check every schedule even if the rules match.")
    ] = False,
) -> None:
    """Compute the schedules' search week blocks again if they were computed by other time
    zone rules than this machine's (every server also does this as it starts)."""
    from agent_server.booking.schedules.zone_rules import refresh_start_blocks
    from agent_server.runtime import Runtime

    settings = _settings()
    _require_database(settings)

    async def run() -> tuple[int, int]:
        runtime = Runtime.create(settings)
        try:
            refreshed = await refresh_start_blocks(runtime.db, force=force)
            return refreshed.checked, refreshed.changed
        finally:
            await runtime.close()

    checked, changed = asyncio.run(run())
    if not checked:
        typer.echo("week blocks already follow this machine's time zone rules")
    else:
        typer.echo(f"checked {checked} schedules; changed the week blocks of {changed}")


@app.command("demo-data")
def demo_data(
    specialists: Annotated[int, typer.Option(help="How many specialists to create.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 7,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing when specialists already exist.")
    ] = False,
) -> None:
    """Load realistic demo specialists with schedules."""
    from agent_server.booking.demo import load_demo_data
    from agent_server.runtime import Runtime

    settings = _settings()

    async def run() -> int:
        runtime = Runtime.create(settings)
        try:
            return await load_demo_data(runtime.db, specialists, seed=seed, if_empty=if_empty)
        finally:
            await runtime.close()

    created = asyncio.run(run())
    typer.echo(f"created {created} demo specialists")


@app.command("watch-deposits")
def watch_deposits(
    batch_blocks: Annotated[
        int, typer.Option(min=1, help="Blocks scanned and committed together.")
    ] = 100,
    from_block: Annotated[
        int | None,
        typer.Option(min=0, help="Where a chain never scanned before starts (default: tip-100)."),
    ] = None,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between polls.")] = 1.0,
) -> None:
    """Run the chain watchers that credit confirmed deposits (starts the embedded chain when
    AGENT_SERVER_EVM_RPC_URL is unset)."""
    import signal

    from agent_server.runtime import Runtime
    from agent_server.services.deposits import DEPOSIT_FOLLOW_UP
    from wallets.embedded import start_embedded_chain_and_watcher

    settings = _settings()
    if not settings.start_watchers:
        typer.echo("AGENT_SERVER_START_WATCHERS is false: no watcher to run.", err=True)
        raise typer.Exit(2)

    async def run() -> None:
        runtime = Runtime.create(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            async with start_embedded_chain_and_watcher(
                runtime,
                follow_up=DEPOSIT_FOLLOW_UP,
                batch_blocks=batch_blocks,
                start_block=from_block,
                interval=interval,
            ) as services:
                names = ", ".join(w.network for w in services.watchers)
                typer.echo(f"watching {names}; Ctrl-C stops", err=True)
                await stop.wait()
        finally:
            await runtime.close()

    asyncio.run(run())


@app.command("send-withdrawals")
def send_withdrawals() -> None:
    """Sign, broadcast and follow approved withdrawals and payouts to confirmation (the only
    process that reads the hot wallet's key: AGENT_SERVER_SENDER_KEYSTORE and its password;
    with no EVM node configured, the embedded chain's development account)."""
    import signal

    from agent_server.runtime import Runtime
    from agent_server.services.withdrawal_sender import run_senders

    settings = _settings()
    _require_database(settings)

    async def run() -> None:
        runtime = Runtime.create(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        typer.echo("sending withdrawals; Ctrl-C stops", err=True)
        try:
            await run_senders(runtime, stop)
        finally:
            await runtime.close()

    asyncio.run(run())


@app.command()
def worker() -> None:
    """Run the webhook delivery worker, the booking clock, the withdrawals' jobs (and the mail
    sender, with an SMTP server)."""
    from agent_server.events.mail_delivery import start_mail_sender
    from agent_server.events.worker import run_worker
    from agent_server.runtime import Runtime
    from agent_server.services.clock import start_clock
    from agent_server.services.withdrawal_jobs import start_withdrawal_jobs

    async def run() -> None:
        runtime = Runtime.create(_settings())
        async with (
            start_mail_sender(runtime),
            start_clock(runtime, standalone=True),
            start_withdrawal_jobs(runtime, standalone=True),
        ):
            await run_worker(runtime)

    asyncio.run(run())


def _operator(actor: str | None) -> str:
    """Who runs an admin command: ``--actor``, else the login name."""
    import getpass
    import os

    if actor:
        return actor
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def _with_runtime(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``work`` on a runtime built from the settings; operator errors exit with 1."""
    from agent_server.kernel.errors import AgentServerError
    from agent_server.runtime import Runtime

    settings = _settings()

    async def run() -> T:
        runtime = Runtime.create(settings)
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(run())
    except AgentServerError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


AgentArg = Annotated[str, typer.Argument(help="The agent's id or email.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; recorded with the change.")]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Operator name to record (default: $USER).")
]


def _check_operator_text(**values: str | None) -> None:
    """``ValidationFailed`` naming the option whose text holds control characters."""
    from agent_server.kernel.inputs import check_text, require

    for name, value in values.items():
        if value is not None:
            require(f"--{name}", check_text, value)


def _change_status(action: str, agent: str, reason: str, actor: str | None) -> None:
    from agent_server.accounts.status import StatusAction, change_status

    async def work(runtime: Runtime) -> str:
        _check_operator_text(reason=reason, actor=actor)
        async with runtime.db.uow() as uow:
            change = await change_status(
                uow, agent, StatusAction(action), actor=_operator(actor), reason=reason
            )
            await uow.commit()
        return (
            f"agent {change.agent_id}: {change.from_status} -> {change.to_status} "
            f"by {change.actor} at {change.at.isoformat()}: {change.reason}"
        )

    typer.echo(_with_runtime(work))


@admin_app.command("list")
def admin_list(
    status: Annotated[
        str | None,
        typer.Option(help="Only this status: pending_deposit, active, suspended or banned."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List agents, newest first."""
    import json

    from agent_server.accounts.models import Agent, AgentStatus
    from agent_server.accounts.status import list_agents

    if status is not None and status not in set(AgentStatus):
        typer.echo(f"error: --status must be one of {', '.join(AgentStatus)}", err=True)
        raise typer.Exit(2)

    async def work(runtime: Runtime) -> list[Agent]:
        async with runtime.db.uow() as uow:
            agents = await list_agents(
                uow, status=AgentStatus(status) if status else None, limit=limit
            )
            await uow.commit()  # read only; committing keeps the loaded rows readable
        return agents

    agents = _with_runtime(work)
    if as_json:
        for a in agents:
            row = {
                "id": a.id,
                "name": a.name,
                "email": a.email,
                "status": a.status,
                "email_verified": a.email_verified,
                "key_prefix": a.api_key_prefix,
                "created_at": a.created_at.isoformat(),
            }
            typer.echo(json.dumps(row))
        return
    typer.echo(f"{'ID':>6}  {'STATUS':<15}  {'VERIFIED':<8}  {'CREATED':<20}  EMAIL / NAME")
    for a in agents:
        created = a.created_at.strftime("%Y-%m-%d %H:%M:%S")
        verified = "yes" if a.email_verified else "no"
        typer.echo(f"{a.id:>6}  {a.status:<15}  {verified:<8}  {created:<20}  {a.email} / {a.name}")


@admin_app.command("activate")
def admin_activate(agent: AgentArg, reason: ReasonOpt, actor: ActorOpt = None) -> None:
    """Activate a pending_deposit agent (normally its first deposit does this)."""
    _change_status("activate", agent, reason, actor)


@admin_app.command("suspend")
def admin_suspend(agent: AgentArg, reason: ReasonOpt, actor: ActorOpt = None) -> None:
    """Suspend an agent: every tool call is refused until it is reactivated."""
    _change_status("suspend", agent, reason, actor)


@admin_app.command("ban")
def admin_ban(agent: AgentArg, reason: ReasonOpt, actor: ActorOpt = None) -> None:
    """Ban an agent permanently."""
    _change_status("ban", agent, reason, actor)


@admin_app.command("reactivate")
def admin_reactivate(agent: AgentArg, reason: ReasonOpt, actor: ActorOpt = None) -> None:
    """Lift a suspension or ban; the agent returns to its status before it."""
    _change_status("reactivate", agent, reason, actor)


CurrencyArg = Annotated[str, typer.Argument(help="BTC, ETH, USDT or USDC.")]
AmountArg = Annotated[
    str, typer.Argument(help="Whole coins as a decimal number, e.g. 25 or 0.0005.")
]
ReferenceOpt = Annotated[
    str | None,
    typer.Option(
        "--reference",
        help="A unique id for this adjustment; running the command again with it changes "
        "nothing (safe retries).",
    ),
]


def _adjust(
    sign: int,
    agent: str,
    currency: str,
    amount: str,
    reason: str,
    actor: str | None,
    reference: str | None,
) -> None:
    """Post an operator credit (sign 1) or debit (sign -1) to an agent's wallet."""
    from agent_server.kernel.money import amount_text
    from agent_server.services.funds import adjust_wallet
    from wallets.currencies import currency_info

    operator = _operator(actor)

    async def work(runtime: Runtime) -> str:
        _check_operator_text(reason=reason, actor=actor, reference=reference)
        info = currency_info(currency)
        base = info.parse(amount)
        async with runtime.db.uow() as uow:
            done = await adjust_wallet(
                uow,
                agent=agent,
                currency=info.code,
                amount=sign * base,
                reason=reason,
                operator=operator,
                activation_usd_micros=runtime.settings.activation_usd_micros,
                reference=f"admin:{reference}" if reference else None,
            )
            await uow.commit()
        verb = "credited" if sign > 0 else "debited"
        return (
            f"agent {done.agent_id}: {verb} {amount_text(base, info.code)} "
            f"(transaction {done.transaction_id}); balance {amount_text(done.balance, info.code)}"
            + ("; agent activated" if done.activated else "")
        )

    typer.echo(_with_runtime(work))


@admin_app.command("credit")
def admin_credit(
    agent: AgentArg,
    currency: CurrencyArg,
    amount: AmountArg,
    reason: ReasonOpt,
    actor: ActorOpt = None,
    reference: ReferenceOpt = None,
) -> None:
    """Credit an agent's wallet (an adjustment with a recorded reason); a credit worth at
    least the activation amount activates a pending_deposit agent."""
    _adjust(1, agent, currency, amount, reason, actor, reference)


@admin_app.command("debit")
def admin_debit(
    agent: AgentArg,
    currency: CurrencyArg,
    amount: AmountArg,
    reason: ReasonOpt,
    actor: ActorOpt = None,
    reference: ReferenceOpt = None,
) -> None:
    """Debit an agent's wallet (an adjustment with a recorded reason); never below zero."""
    _adjust(-1, agent, currency, amount, reason, actor, reference)


@dev_app.command("fund")
def dev_fund(
    agent: Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="The agent's id.")],
    currency: Annotated[str, typer.Argument(help="BTC, ETH, USDT or USDC.")],
    amount: Annotated[str, typer.Argument(help="Whole coins, e.g. 25 or 0.01.")],
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the watcher to credit it (0: don't).")
    ] = 30.0,
) -> None:
    """Send a real deposit on the embedded chains (anvil, bcoin regtest) and mine its
    confirmations."""
    from agent_server.accounts.models import Agent
    from agent_server.kernel.errors import AgentServerError
    from agent_server.runtime import Runtime
    from wallets.devfund import NoDevelopmentChain, fund_agent, wait_for_credit

    settings = _settings()

    async def run() -> int:
        runtime = Runtime.create(settings)
        try:
            funding = await fund_agent(settings, runtime.db, agent, currency, amount)
            typer.echo(
                f"sent {amount} {funding.currency} to {funding.address} in {funding.tx_hash} "
                f"(block {funding.block_number}, {settings.confirmations} confirmations mined)"
            )
            if wait <= 0:
                return 0
            try:
                async with asyncio.timeout(wait):
                    deposit = await wait_for_credit(runtime.db, funding)
            except TimeoutError:
                typer.echo(
                    "not credited yet: is `agent-server serve` or `watch-deposits` running?",
                    err=True,
                )
                return 1
            async with runtime.db.uow() as uow:
                found = await uow.session.get(Agent, agent)
                status = found.status if found else "?"
            typer.echo(f"deposit {deposit.status}; agent {agent} is {status}")
            return 0
        except NoDevelopmentChain as exc:
            typer.echo(str(exc), err=True)
            return 2
        except AgentServerError as exc:
            typer.echo(exc.message, err=True)
            return 2
        finally:
            await runtime.close()

    code = asyncio.run(run())
    if code:
        raise typer.Exit(code)


@dev_app.command("mail")
def dev_mail(
    last: Annotated[
        int, typer.Option("--last", min=1, max=1000, help="How many of the newest mails.")
    ] = 5,
    to: Annotated[str | None, typer.Option("--to", help="Only the mails to this address.")] = None,
) -> None:
    """Print the newest outbox mails with their codes, oldest first.

    Mails go to the outbox when AGENT_SERVER_SMTP_URL is unset, as under `make run`."""
    from agent_server.mail import latest_outbox

    settings = _settings()
    if settings.smtp_url:
        typer.echo(
            "AGENT_SERVER_SMTP_URL is set: codes are mailed through that server; the outbox "
            "holds only mails queued for it (and any from before it was set).",
            err=True,
        )
    _require_database(settings)

    async def work(runtime: Runtime) -> list[OutboxMail]:
        _check_operator_text(to=to)
        return await latest_outbox(runtime.db, last, to)

    mails = _with_runtime(work)
    if not mails:
        typer.echo("no mail in the outbox" + (f" to {to}" if to else ""), err=True)
        return
    for mail in mails:
        sent = mail.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        state = f" · {mail.status}" if mail.status else ""
        typer.echo(f"--- mail {mail.id} · {sent} · {mail.kind}{state}")
        typer.echo(f"To: {mail.to_addr}")
        typer.echo(f"Subject: {mail.subject}")
        typer.echo("")
        typer.echo(mail.body.rstrip("\n"))
        typer.echo("")


def main() -> None:  # pragma: no cover - console entry
    app()
