"""The import contracts `make lint` checks (pyproject.toml, [tool.importlinter]).

They hold for the code as it is; and the check does report a breach: the same
configuration plus one contract the code breaks on purpose (the sandboxes pillar's
MCP surface uses the MCP front, which that contract forbids) fails, naming the import.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _ini(contracts: list[dict[str, object]], tmp_path: Path) -> Path:
    """The contracts as an .importlinter INI file (what --config reads besides TOML)."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[importlinter]", "root_packages =", *(f"    {p}" for p in settings["root_packages"])]
    for number, contract in enumerate(contracts):
        lines.append(f"\n[importlinter:contract:{number}]")
        for key, value in contract.items():
            if isinstance(value, list):
                lines += [f"{key} =", *(f"    {item}" for item in value)]
            else:
                lines.append(f"{key} = {value}")
    path = tmp_path / "contracts.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_projects_contracts_hold() -> None:
    done = _lint(ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kept, 0 broken" in done.stdout, done.stdout


def test_a_deliberate_breach_is_reported(tmp_path: Path) -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    breach = {
        "name": "Deliberate: sandboxes imports no MCP front",
        "type": "forbidden",
        "source_modules": ["sandboxes"],
        "forbidden_modules": ["gateway.mcp"],
    }
    done = _lint(_ini([*settings["contracts"], breach], tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Deliberate: sandboxes imports no MCP front BROKEN" in done.stdout
    assert "sandboxes.mcp -> gateway.mcp" in done.stdout
