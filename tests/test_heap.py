"""Objects left out of the cyclic garbage collector: for good in a server, for one long step in a command."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from timeline import heap
from timeline.app import imports, maintenance

from .conftest import SEED
from .test_cli import run


@pytest.fixture
def unfrozen() -> Iterator[None]:
    # Another test's freeze must not decide this one, nor this one's outlive it.
    gc.unfreeze()
    heap._for_good = False
    yield
    gc.unfreeze()
    heap._for_good = False


class _Node:
    """A container the collector tracks."""


def _tracked(obj: object) -> bool:
    """Whether the collector's generations (not the frozen objects) hold ``obj``."""
    return any(o is obj for o in gc.get_objects())


@pytest.mark.usefixtures("unfrozen")
def test_what_the_process_held_is_left_out_inside_and_given_back_after() -> None:
    held = _Node()
    cycle = _Node()
    cycle.me = cycle  # type: ignore[attr-defined]
    gone = weakref.ref(cycle)
    with heap.frozen():
        assert gc.get_freeze_count() > 1_000
        assert not _tracked(held)
        made_inside = _Node()
        assert _tracked(made_inside)
        # Garbage from before is not walked, so not freed, while frozen...
        del cycle
        gc.collect()
        assert gone() is not None
    assert gc.get_freeze_count() == 0
    assert _tracked(held)
    # ...and is freed by the first full collection after.
    gc.collect()
    assert gone() is None


@pytest.mark.usefixtures("unfrozen")
def test_a_process_frozen_for_good_stays_frozen_before_or_meanwhile() -> None:
    heap.freeze()
    held = _Node()
    heap.freeze()
    with heap.frozen():
        pass
    assert gc.get_freeze_count() > 1_000
    assert not _tracked(held)
    gc.unfreeze()
    heap._for_good = False
    with heap.frozen():
        heap.freeze()  # a server's app made inside a command's frozen step
        made = _Node()
        heap.freeze()
    assert gc.get_freeze_count() > 1_000
    assert not _tracked(made)


@pytest.mark.usefixtures("unfrozen")
def test_what_was_held_is_given_back_when_the_step_fails() -> None:
    held = _Node()
    inside: list[bool] = []

    def failing_step() -> None:
        with heap.frozen():
            inside.append(_tracked(held))
            raise RuntimeError("the step failed")

    with pytest.raises(RuntimeError):
        failing_step()
    assert inside == [False]
    assert gc.get_freeze_count() == 0
    assert _tracked(held)


@pytest.mark.usefixtures("unfrozen")
async def test_timeline_import_runs_with_the_heap_frozen_and_leaves_it_as_it_was(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    seen: list[int] = []
    original = imports.import_fixtures

    async def watched(*args: object, **kwargs: object) -> list[imports.ImportResult]:
        seen.append(gc.get_freeze_count())
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(imports, "import_fixtures", watched)
    assert await run("--database-url", database_url, "import", str(SEED)) == 0
    assert "29 events appended" in capsys.readouterr().out
    assert len(seen) == 1
    assert seen[0] > 10_000
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("unfrozen")
async def test_timeline_rebuild_runs_with_the_heap_frozen_and_leaves_it_as_it_was(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("--database-url", database_url, "import", str(SEED)) == 0
    seen: list[int] = []
    original = maintenance.rebuild_all

    async def watched(*args: object, **kwargs: object) -> int:
        seen.append(gc.get_freeze_count())
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(maintenance, "rebuild_all", watched)
    assert await run("--database-url", database_url, "rebuild") == 0
    assert "rebuilt the views from 29 events" in capsys.readouterr().out
    assert len(seen) == 1
    assert seen[0] > 10_000
    assert gc.get_freeze_count() == 0
