"""Keeping a process's long-lived objects out of Python's cyclic garbage collector.

A full collection walks every container the process holds, the modules' first. A server paused for up to
105 ms in one (bench/results-2026-12-04-gc-freeze.txt), and an import of 10,000 events spent 148-163 ms in
two (bench/results-2026-12-05-eleventh-import-gc.txt); frozen, the same two walk only what came after
(27.5-30 ms).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Whether ``freeze`` ran: CPython keeps one pool of frozen objects, and a ``frozen`` block giving its own
# back would give back a server's with it.
_for_good = False


def freeze() -> None:
    """Leave what the process holds by now out of every later collection, for good (a server's modules, app
    and OpenAPI schema); what is garbage already, frozen or not, is freed first."""
    global _for_good  # noqa: PLW0603
    _for_good = True
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@contextmanager
def frozen() -> Iterator[None]:
    """Leave what the process holds at the start out of the collections made inside (a command's one long
    step). All of it goes back at the end; what of it became garbage meanwhile is freed by the first full
    collection after. A process frozen for good, before or meanwhile, keeps its freeze."""
    if gc.get_freeze_count():
        yield
        return
    # No collection first: it would walk the whole heap once to spare a walk or two of it.
    gc.freeze()
    try:
        yield
    finally:
        if not _for_good:
            gc.unfreeze()
