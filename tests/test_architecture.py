"""The import contract of pyproject.toml (``[tool.importlinter]``): arrows point down only.

Transports → services and runtime → domain → kernel, and inside the domain booking → events →
accounts and billing (siblings that import neither each other) → mail and wallets (siblings);
billing and wallets import neither bookings nor accounts; events import no transport;
transports leave escrow, refunds, payouts and rebooking to the services.
The first test checks the code as it is; the others add one upward import to a copy of the code
and show the same contract refusing it, so the contract cannot pass by checking nothing.
One holds every module over about 400 lines to a "Long by design: ..." line at its top; the
last finds no module importing another module's private (underscored) names.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("agent_server", "billing", "wallets")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the packages under ``tree`` with ``tree``'s pyproject.toml."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", "pyproject.toml"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def copy_of_the_code(tmp_path: Path) -> Path:
    """The three packages and pyproject.toml, copied, so a test may break the copy."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "migrations"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_the_import_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def _add_module(tree: Path, path: str, source: str) -> None:
    (tree / path).write_text(source)


def test_the_kernel_importing_a_service_breaks_the_layers(copy_of_the_code: Path) -> None:
    _add_module(
        copy_of_the_code,
        "agent_server/kernel/upward.py",
        '"""An arrow that runs back up."""\n\nfrom agent_server.services import bookings\n',
    )
    result = lint_imports(copy_of_the_code)
    assert result.returncode != 0
    assert "agent_server.kernel is not allowed to import agent_server.services" in result.stdout
    assert "agent_server.kernel.upward -> agent_server.services.bookings" in result.stdout


def test_sideways_and_money_arrows_break_the_contract(copy_of_the_code: Path) -> None:
    _add_module(
        copy_of_the_code,
        "billing/upward.py",
        '"""A sibling\'s model."""\n\nfrom agent_server.booking.models import Booking\n',
    )
    _add_module(
        copy_of_the_code,
        "agent_server/events/upward.py",
        '"""A transport."""\n\nimport agent_server.dashboard.web\n',
    )
    _add_module(
        copy_of_the_code,
        "agent_server/dashboard/refunds.py",
        '"""A money step in a transport."""\n\nfrom billing.escrow import refund_booking\n',
    )
    result = lint_imports(copy_of_the_code)
    assert result.returncode != 0
    assert "billing is not allowed to import agent_server.booking" in result.stdout
    assert "billing.upward -> agent_server.booking.models" in result.stdout
    assert "agent_server.events.upward -> agent_server.dashboard.web" in result.stdout
    assert "agent_server.dashboard.refunds -> billing.escrow" in result.stdout


def test_arrows_between_domain_packages_run_one_way(copy_of_the_code: Path) -> None:
    _add_module(
        copy_of_the_code,
        "agent_server/accounts/upward.py",
        '"""Accounts reading bookings."""\n\nfrom agent_server.booking.models import Schedule\n',
    )
    _add_module(
        copy_of_the_code,
        "agent_server/events/upward.py",
        '"""Events reading bookings."""\n\nimport agent_server.booking.models\n',
    )
    _add_module(
        copy_of_the_code,
        "wallets/upward.py",
        '"""Wallets posting to the ledger."""\n\nfrom billing.wallet_funds import credit_deposit\n',
    )
    _add_module(
        copy_of_the_code,
        "billing/sideways.py",
        '"""Billing reading agents\' status."""\n\nimport agent_server.accounts.status\n',
    )
    result = lint_imports(copy_of_the_code)
    assert result.returncode != 0
    assert "agent_server.accounts is not allowed to import agent_server.booking" in result.stdout
    assert "agent_server.accounts.upward -> agent_server.booking.models" in result.stdout
    assert "agent_server.events is not allowed to import agent_server.booking" in result.stdout
    assert "wallets is not allowed to import billing" in result.stdout
    assert "wallets.upward -> billing.wallet_funds" in result.stdout
    assert "billing is not allowed to import agent_server.accounts" in result.stdout


LONG_MODULE_LINES = 400


def test_long_modules_say_at_their_top_why_they_stay_whole() -> None:
    unexplained = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            lines = path.read_text().splitlines()
            if len(lines) <= LONG_MODULE_LINES:
                continue
            # The reason opens the file, ends the module docstring or comes right after it.
            tree = ast.parse("\n".join(lines))
            first = tree.body[0] if tree.body else None
            end = first.end_lineno or 0 if isinstance(first, ast.Expr) else 0
            top = [lines[0], *lines[max(end - 1, 0) : end + 3]]
            if not any("Long by design: " in line for line in top):
                unexplained.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert unexplained == [], "split these or say why they stay whole: " + ", ".join(unexplained)


def test_no_module_imports_another_modules_private_names() -> None:
    """A name with a leading underscore is its module's own: another module that needs it
    gets a public name, so a private helper can change without breaking its importers."""
    borrowed = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    names = [a.name for a in node.names]
                    borrowed += [
                        f"{path.relative_to(ROOT)}: {node.module}.{name}"
                        for name in names
                        if name.startswith("_") and not name.startswith("__")
                    ]
    assert borrowed == [], "make these public: " + ", ".join(borrowed)
