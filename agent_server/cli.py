"""The ``agent-server`` command line."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from agent_server.config import Settings, get_settings
from agent_server.logs import configure_logging

app = typer.Typer(
    help="Agent Server: MCP tools for AI agents to find and book human experts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
admin_app = typer.Typer(help="Operator commands: agents, statuses, balances.", no_args_is_help=True)
dev_app = typer.Typer(help="Development helpers on the embedded local chain.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(dev_app, name="dev")


def _settings() -> Settings:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _not_yet(what: str) -> None:
    typer.echo(f"{what} is not available in this version yet.", err=True)
    raise typer.Exit(2)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (0 picks a free one).")] = None,
) -> None:
    """Serve MCP at /mcp, REST at /api, the dashboard at / and iCal at /calendar."""
    import uvicorn

    from agent_server.app import create_app
    from agent_server.runtime import Runtime

    settings = _settings()
    runtime = Runtime.create(settings)
    uvicorn.run(
        create_app(runtime),
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


@app.command()
def stdio() -> None:
    """Serve MCP over stdio; the API key comes from AGENT_SERVER_API_KEY."""
    _not_yet("MCP over stdio")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations to the configured database."""
    from agent_server.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at {revision}")


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
def watch_deposits() -> None:
    """Run the chain watchers that credit confirmed deposits."""
    _not_yet("The deposit watcher")


@app.command()
def worker() -> None:
    """Run the webhook delivery worker."""
    _not_yet("The webhook worker")


@admin_app.command("list")
def admin_list() -> None:
    """List agents."""
    _not_yet("admin list")


@dev_app.command("fund")
def dev_fund(agent: int, currency: str, amount: str) -> None:
    """Send a real deposit on the embedded chain and mine its confirmations."""
    _not_yet("dev fund")


def main() -> None:  # pragma: no cover - console entry
    app()
