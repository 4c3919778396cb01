"""The layout's rules that import contracts cannot express (``lint-imports`` checks the rest).

Only ``trio_codex/codex/`` spawns or signals processes: no other module calls the process
functions of ``os``, ``trio`` or ``subprocess``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trio_codex

PACKAGE = Path(trio_codex.__file__).parent
#: Calls that start or signal a process, by their last two name parts.
PROCESS_CALLS = frozenset(
    {
        ("os", "kill"),
        ("os", "killpg"),
        ("os", "fork"),
        ("os", "posix_spawn"),
        ("lowlevel", "open_process"),
        ("trio", "run_process"),
        ("subprocess", "Popen"),
        ("subprocess", "run"),
    }
)


def _process_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if (name, node.func.attr) in PROCESS_CALLS:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}.{node.func.attr}")
    return found


def test_only_the_codex_wing_spawns_or_signals_processes() -> None:
    """Every process call of the package is in trio_codex/codex/."""
    outside = [
        call
        for path in sorted(PACKAGE.rglob("*.py"))
        if "codex" not in path.relative_to(PACKAGE).parts[:-1]
        for call in _process_calls(path)
    ]
    assert outside == []


def test_the_scan_sees_the_codex_wing() -> None:
    """The scan finds the calls that are there (so the rule above cannot pass vacuously)."""
    inside = [
        call for path in sorted((PACKAGE / "codex").rglob("*.py")) for call in _process_calls(path)
    ]
    assert any("open_process" in call for call in inside), inside
    assert any("killpg" in call for call in inside), inside
