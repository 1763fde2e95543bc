"""The README's configuration table and quick start stay true to the code."""

from pathlib import Path

from gateway.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [f"MCPGW_{name.upper()}" for name in Settings.model_fields]
    missing = [env for env in missing if f"`{env}`" not in README]
    assert missing == [], f"README configuration table lacks {missing}"


def test_quick_start_is_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make serve", "make test"]
