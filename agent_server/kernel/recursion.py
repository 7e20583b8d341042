"""The interpreter's recursion limit, held at its default.

``py_ecc`` (imported by web3 through ``eth_keyfile``) raises ``sys.setrecursionlimit`` to
100,000 when it is imported. With a limit that high, a deeply nested input (a JSON body of
70,000 ``[``) makes the C parsers recurse until the C stack overflows and the process dies,
where the default limit would have raised ``RecursionError``. Every module importing web3 or
eth_account imports it at its top (never inside a function) and calls
``restore_recursion_limit()`` right after its imports, and the server's entry points call it
once more at start. The server imports those modules only when a chain needs them, so the
first import may come late, from whichever of them is used first.
"""

from __future__ import annotations

import sys

# CPython's own default (``Py_DEFAULT_RECURSION_LIMIT``): deep enough for this code and its
# libraries, shallow enough that the C stack of any thread outlasts it.
DEFAULT_RECURSION_LIMIT = 1000


def restore_recursion_limit() -> None:
    """Lower the recursion limit back to the default if an import raised it."""
    if sys.getrecursionlimit() > DEFAULT_RECURSION_LIMIT:
        sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)
