"""The import graph keeps its layers: domain <- projections <- store <- application <- API and CLI.

Read from the source (no import runs): a module may import its own layer and the layers below, never one
above, so the domain stays pure, storage knows nothing of HTTP, and the API reaches the store through the
application layer's commands and queries (or, for plain reads, the store itself) but never the reverse.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "timeline"

# Lowest first. A module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("domain", ("timeline.domain",)),
    # Pure folds and parsing: no I/O, only the domain beneath them.
    (
        "projections",
        (
            "timeline.projections",
            "timeline.ranking",
            "timeline.activity",
            "timeline.resumed",
            "timeline.timetravel",
            "timeline.fixtures",
            "timeline.drafting",
        ),
    ),
    ("store", ("timeline.store",)),
    ("application", ("timeline.app", "timeline.service", "timeline.groupcommit")),
    ("entry", ("timeline.api", "timeline.cli", "timeline.console", "timeline.__main__")),
]


def _listed(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def _layer(module: str) -> int | None:
    """The module's layer; a module of ours that is not listed but imports nothing of ours (a helper such
    as a log formatter or a hash function) sits at the bottom, where anything may use it."""
    rank = _listed(module)
    if rank is None and (path := _path_of(module)) is not None and not _imports(path):
        return 0
    return rank


def _path_of(module: str) -> Path | None:
    relative = Path(*module.split("."))
    for candidate in (SRC.parent / relative.with_suffix(".py"), SRC.parent / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_of(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ours(module: str | None) -> bool:
    return module is not None and (module == "timeline" or module.startswith("timeline."))


def _imports(path: Path) -> set[str]:
    """The timeline modules a file imports, ``from timeline import x`` read as ``timeline.x``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("timeline."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _ours(node.module):
            assert node.module is not None
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


MODULES = sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    unplaced = [
        _module_of(p) for p in MODULES if _module_of(p) != "timeline" and _layer(_module_of(p)) is None
    ]
    assert unplaced == [], "add these modules to a layer in LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=_module_of)
def test_a_module_imports_nothing_from_a_layer_above_its_own(path: Path) -> None:
    module = _module_of(path)
    rank = _layer(module)
    if rank is None:
        return
    above = sorted(
        f"{imported} ({LAYERS[other][0]})"
        for imported in _imports(path)
        if (other := _layer(imported)) is not None and other > rank
    )
    assert above == [], f"{module} ({LAYERS[rank][0]}) imports from a layer above it"


def test_the_check_sees_every_spelling_of_an_import(tmp_path: Path) -> None:
    # Were a spelling missed, an upward import written that way would pass unnoticed.
    module = tmp_path / "example.py"
    module.write_text(
        "import timeline.store.views\nfrom timeline import cli\nfrom timeline.api.app import create_app\n"
    )
    found = _imports(module)
    assert {"timeline.store.views", "timeline.cli", "timeline.api.app"} <= found
    assert {_layer(m) for m in found} >= {2, 4}


def test_an_unlisted_module_is_placed_only_when_it_imports_nothing_of_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A helper importing nothing of ours sits at the bottom; one importing ours has to be listed, so no
    # module dodges the check by being left out of LAYERS.
    package = tmp_path / "timeline"
    package.mkdir()
    (package / "helper.py").write_text("import json\n")
    (package / "stray.py").write_text("from timeline.store import views\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", package)
    assert _layer("timeline.helper") == 0
    assert _layer("timeline.stray") is None


# One module, one job: none grows much past 400 lines (store/database.py had reached 548 before its
# connection set-up and its faults became modules of their own).
LONGEST = 420


def test_no_module_grows_much_past_400_lines() -> None:
    long = {_module_of(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > LONGEST}
    assert long == {}, f"split these by what each part does (at most {LONGEST} lines)"
