"""What a serving process loads: the chain libraries (web3, eth_account, eth_utils, bip_utils)
only once a chain is used, icalendar once a feed is rendered, alembic only to migrate,
asyncpg only on PostgreSQL, httpx only to call out (a chain node, a webhook, an OAuth client's
document), aiosmtplib only to send mail, segno only to draw a QR code and rich (with attrs and
pygments) never, so a server stays small; and wherever web3 or eth_account is
first imported, the recursion limit is back at its default after."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADED_ON_USE = (
    *("web3", "eth_account", "eth_keyfile", "eth_utils", "py_ecc", "bip_utils"),
    *("icalendar", "alembic", "mako", "asyncpg", "httpx"),
    *("aiosmtplib", "segno", "rich", "attr", "pygments"),
)
# The packages whose import raises the recursion limit (py_ecc, through eth_keyfile).
RAISING = re.compile(r"^([ \t]*)(?:from|import) (web3|eth_account|eth_keyfile|py_ecc)\b", re.M)


def _run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_served_app_loads_no_library_it_does_not_use_yet(tmp_path: Path) -> None:
    """What ``agent-server serve`` builds and checks before it listens (chains not started)."""
    out = _run(
        f"""
        import sys
        import uvicorn
        import agent_server.cli
        from agent_server.app import create_app
        from agent_server.booking.search.warm import warm_statements
        from agent_server.kernel.config import Settings
        from agent_server.kernel.store.migrate import head_revision
        from agent_server.runtime import Runtime
        url = "sqlite+aiosqlite:///{tmp_path / "db.sqlite"}"
        runtime = Runtime.create(Settings(database_url=url))
        warm_statements(runtime.db)
        create_app(runtime)
        assert head_revision()
        print(sorted(m for m in sys.modules if m.split(".")[0] in {LOADED_ON_USE!r}))
        """
    )
    assert out.strip() == "[]"


def _raising_modules() -> dict[str, list[str]]:
    """First-party modules importing a package that raises the limit: name -> indents."""
    found: dict[str, list[str]] = {}
    for package in ("agent_server", "billing", "wallets"):
        for path in sorted((ROOT / package).rglob("*.py")):
            indents = [m.group(1) for m in RAISING.finditer(path.read_text())]
            if indents:
                name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                found[name.removesuffix(".__init__")] = indents
    return found


def test_every_first_import_of_web3_leaves_the_recursion_limit_at_its_default() -> None:
    """The server imports these modules on first use, so any of them may be the first to
    import web3 or eth_account: each, imported first in a fresh process, restores the limit."""
    modules = _raising_modules()
    assert {"wallets.chains.anvil", "wallets.sending.keys"} <= modules.keys()
    # Imported inside a function, nothing would restore the limit after it.
    assert {m: i for m, i in modules.items() if any(i)} == {}
    for module in modules:
        out = _run(
            f"""
            import importlib, sys
            default = sys.getrecursionlimit()
            importlib.import_module({module!r})
            assert "py_ecc" in sys.modules
            print(default, sys.getrecursionlimit())
            """
        )
        default, after = map(int, out.split())
        assert after <= default == 1000, module


def test_the_head_revision_read_from_the_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    from agent_server.kernel.store.migrate import alembic_config, head_revision

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert head_revision() == script.get_current_head()
    assert head_revision() == max(r.revision for r in script.walk_revisions())
