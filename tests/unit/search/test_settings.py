"""The MCPGW_SEARCH_* settings carry the tuned defaults and reach the index."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from gateway.config import Settings
from gateway.mcp.search import Tuning
from gateway.mcp.search.tuning import from_settings


def test_settings_defaults_are_the_tuned_defaults() -> None:
    from_env = from_settings(Settings())
    for field in fields(Tuning):
        assert getattr(from_env, field.name) == getattr(Tuning(), field.name), field.name


def test_settings_reach_the_tuning(tmp_path: Path) -> None:
    extra = tmp_path / "synonyms.json"
    extra.write_text(json.dumps([["invoice", "bill"]]))
    tuning = from_settings(
        Settings(
            search_lexical_weight=0.2, search_dense_model="off", search_synonyms_file=str(extra)
        )
    )
    assert tuning.lexical_weight == 0.2 and tuning.dense_model == "off"
    assert ("bill",) in tuning.synonyms[("invoic",)]


def test_dense_text_chars_reaches_the_index() -> None:
    tuning = from_settings(Settings(search_dense_text_chars=500))
    assert tuning.dense_text_chars == 500
