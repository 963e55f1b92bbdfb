"""hf_patchdist.verifiers stays split into modules of one job each: none may grow past 600 lines."""

from __future__ import annotations

from pathlib import Path

MAX_LINES = 600
PACKAGE = Path(__file__).resolve().parents[2] / "hf_patchdist" / "verifiers"


def test_no_verifier_module_exceeds_600_lines():
    sizes = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert "__init__.py" in sizes, f"no package at {PACKAGE}"
    too_long = {name: lines for name, lines in sorted(sizes.items()) if lines > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them): {too_long}"
