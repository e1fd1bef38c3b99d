"""Keeping a process's long-lived objects out of Python's cyclic garbage collector.

A full collection walks every container the process holds: the modules' 100,000-odd objects before any of
ours. A server paused for up to 105 ms in one (bench/results-2026-12-04-gc-freeze.txt), and an import of
10,000 events spent 148-163 ms in two (bench/results-2026-12-05-eleventh-import-gc.txt); frozen, the same
two walk only what came after (28-30 ms).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def freeze() -> None:
    """Leave what the process holds by now out of every later collection, for good (a server's modules, app
    and OpenAPI schema); what is garbage already is freed first, not frozen."""
    gc.collect()
    gc.freeze()


@contextmanager
def frozen() -> Iterator[None]:
    """Leave what the process holds at the start out of the collections made inside (a command's one long
    step); all of it goes back at the end, garbage included, so nothing is kept that would have been freed.
    A process frozen for good already is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    # No collection first: it would walk the whole heap once to spare a walk or two of it.
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
