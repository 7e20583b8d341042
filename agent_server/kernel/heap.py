"""The heap of a process that serves for its whole life (``serve``, ``stdio``).

Start-up leaves a few hundred thousand objects that live as long as the process: modules,
models, compiled statements, the app. Python's cyclic garbage collector walks all of them in
every full collection (about 100 ms of CPU on this server), which shows as a call that takes
that much longer than its neighbours. ``settle_after_start`` collects what start-up left over,
then freezes the rest (``gc.freeze``): the collector ignores them from then on. Objects made
later, caches included, are collected as before. Only a process that serves one app for its
life calls it: in a process that builds many (the tests), frozen objects that later become
cyclic garbage would never be freed.
"""

from __future__ import annotations

import gc

from agent_server.kernel.metrics import HEAP_FROZEN


def settle_after_start() -> int:
    """Collect, then freeze what start-up left; how many objects are frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    HEAP_FROZEN.set(frozen)
    return frozen
