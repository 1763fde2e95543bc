from mcp import types

from gateway.mcp.meta import resolve_mode
from gateway.mcp.search import ToolIndex, tokenize


def _tool(name: str, description: str, *params: str) -> types.Tool:
    return types.Tool(
        name=name,
        description=description,
        input_schema={"type": "object", "properties": {p: {"type": "string"} for p in params}},
    )


TOOLS = [
    _tool("github__create_issue", "Open a new issue in a repository", "repo", "title", "body"),
    _tool("github__list_pull_requests", "List pull requests of a repository", "repo", "state"),
    _tool("weather__get_forecast", "Weather forecast for a city", "city", "days"),
    _tool("essentials__calculator_convert_units", "Convert between units", "value", "from_unit"),
]


def test_tokenize_splits_names_and_camel_case() -> None:
    assert tokenize("github__create_issue") == ["github", "create", "issue"]
    assert tokenize("getForecastNow") == ["get", "forecast", "now"]


def test_best_match_first_with_scores() -> None:
    index = ToolIndex(TOOLS)
    results = index.search("open an issue on github", 2)
    assert results[0][0].name == "github__create_issue"
    assert results[0][1] > 0
    assert index.search("forecast for paris")[0][0].name == "weather__get_forecast"
    assert (
        index.search("from_unit")[0][0].name == "essentials__calculator_convert_units"
    )  # parameter names count


def test_no_match_and_limits() -> None:
    index = ToolIndex(TOOLS)
    assert index.search("zzzz") == []
    assert index.search("") == []
    assert len(index.search("repository", 1)) == 1
    assert ToolIndex([]).search("anything") == []


def test_mode_resolution() -> None:
    assert resolve_mode("auto", 30, 30) == "list"
    assert resolve_mode("auto", 31, 30) == "search_execute"
    assert resolve_mode("list", 1000, 30) == "list"
    assert resolve_mode("search_execute", 1, 30) == "search_execute"
