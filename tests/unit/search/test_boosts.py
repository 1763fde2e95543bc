"""What an admin and the gateway's own records add to ranking: a tool's search
keywords, the usage boost (audit call counts), the linked-skill boost; and folding of
the same tool listed under different names by two servers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from mcp import types

from gateway.mcp.search import ToolIndex, Tuning
from gateway.mcp.search import signals as search_signals
from gateway.mcp.search.signals import Signals, skill_hints, usage_shares


def _tool(name: str, description: str, *params: str) -> types.Tool:
    schema = {"type": "object", "properties": {p: {"type": "string"} for p in params}}
    return types.Tool(name=name, description=description, input_schema=schema)


TOOLS = [
    _tool("books__create_bill", "Create a bill for a contact", "contact_id", "amount"),
    _tool("books__list_bills", "List bills", "status"),
    _tool("crm__create_deal", "Create a deal in the pipeline", "name", "amount"),
    _tool("crm__list_deals", "List deals in the pipeline", "stage"),
    _tool("notes__create_note", "Create a note", "text"),
    _tool("notes__list_notes", "List notes", "folder"),
]
LEXICAL = Tuning(dense_model="off")  # ranking by words alone: exact and fast
# Unscaled BM25F when dense is off: boosts a little larger than the defaults matter.
BOOSTED = replace(LEXICAL, usage_boost=0.2, skill_boost=0.2)


@pytest.fixture(autouse=True)
def no_signals() -> Iterator[None]:
    yield
    search_signals.install(Signals())


def test_keywords_find_a_tool_its_own_words_do_not() -> None:
    assert ToolIndex(TOOLS, LEXICAL).search("raise an invoice", 3) == []
    keywords = [("invoice", "raise an invoice"), (), (), (), (), ()]
    hits = ToolIndex(TOOLS, LEXICAL, keywords=keywords).search("raise an invoice", 3)
    assert hits[0].tool.name == "books__create_bill"
    assert "keywords: raise, invoice" in hits[0].reason


def test_keywords_weigh_like_the_name() -> None:
    # "pipeline" is in both deal tools' descriptions; a keyword lifts the one it is on.
    assert ToolIndex(TOOLS, LEXICAL).search("pipeline", 1)[0].tool.name == "crm__list_deals"
    keywords = [(), (), ("pipeline",), (), (), ()]
    hits = ToolIndex(TOOLS, LEXICAL, keywords=keywords).search("pipeline", 2)
    assert hits[0].tool.name == "crm__create_deal"
    off = ToolIndex(TOOLS, replace(LEXICAL, weight_keywords=0.0), keywords=keywords)
    assert off.search("pipeline", 1)[0].tool.name == "crm__list_deals"


def test_usage_boost_breaks_a_near_tie_and_is_off_at_zero() -> None:
    index = ToolIndex(TOOLS, BOOSTED)
    assert index.search("create", 1)[0].tool.name == "notes__create_note"  # the shortest
    search_signals.install(Signals(usage=usage_shares({"crm__create_deal": 40, "x__y": 2})))
    assert index.search("create", 1)[0].tool.name == "crm__create_deal"
    off = ToolIndex(TOOLS, replace(BOOSTED, usage_boost=0.0))
    assert off.search("create", 1)[0].tool.name == "notes__create_note"


def test_usage_shares_are_log_scaled() -> None:
    shares = usage_shares({"a": 1000, "b": 31, "c": 0})
    assert shares["a"] == 1.0 and 0.45 < shares["b"] < 0.55 and "c" not in shares
    assert usage_shares({}) == {}


def test_a_skill_linked_to_a_server_lifts_its_tools_for_the_skill_s_task() -> None:
    index = ToolIndex(TOOLS, BOOSTED)
    query = "create the month-end closing"
    assert index.search(query, 1)[0].tool.name == "notes__create_note"
    hints = skill_hints([("month-end-closing", "How we close the month", ["crm"])])
    search_signals.install(Signals(skills=hints))
    assert index.search(query, 1)[0].tool.name == "crm__create_deal"
    # A skill sharing fewer than half of the query's words is chance, not a hint (a
    # third of them, at this weight, would otherwise win).
    strong = ToolIndex(TOOLS, replace(BOOSTED, skill_boost=0.5))
    third = "create the month-end report for next quarter"
    assert strong.search(third, 1)[0].tool.name == "notes__create_note"
    off = ToolIndex(TOOLS, replace(BOOSTED, skill_boost=0.0))
    assert off.search(query, 1)[0].tool.name == "notes__create_note"


def test_same_tool_under_two_servers_prefixes_is_one_hit() -> None:
    description = "Click an element on the page by its CSS selector"
    tools = [
        *TOOLS,
        _tool("playwright__playwright_click", description, "selector"),
        _tool("puppeteer__puppeteer_click", description, "selector"),
    ]
    hits = ToolIndex(tools, LEXICAL).search("click the button", 5)
    folded = [(h.tool.name, *h.alternatives) for h in hits if "click" in h.tool.name]
    assert folded == [("playwright__playwright_click", "puppeteer__puppeteer_click")]


def test_a_manage_tool_does_what_create_update_and_delete_do() -> None:
    from gateway.mcp.search import rerank
    from gateway.mcp.search.fields import fields_of

    tool = _tool("contacts__manage_contact", "Create, update or delete a contact", "action")
    assert rerank.tool_action(fields_of(tool)) == {"create", "update", "delete"}
    assert rerank.query_action("add a new person to my contacts") == {"create"}
