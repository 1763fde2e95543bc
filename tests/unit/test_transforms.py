"""Tool transforms in process: the registered shape's checks, the JSON path language,
result filters, and what a server's compiled transforms list and resolve
(gateway/servers/transforms.py, transforming.py, jsonpath.py). The same on real
backends, through every path: tests/integration/mcp/test_transforms.py."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import types
from pydantic import ValidationError

from gateway.errors import InvalidInput
from gateway.servers import jsonpath
from gateway.servers.calls import CallTarget
from gateway.servers.pipeline import Call, Pipeline
from gateway.servers.transforming import (
    ResultFilter,
    ServerTransforms,
    ToolTransform,
    TransformArguments,
)
from gateway.servers.transforms import (
    TransformsIn,
    check_transforms,
    join_config,
    split_config,
    stored_transforms,
)
from tests.unit.test_call_pipeline import _call

SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}
TOOLS = [types.Tool(name=n, input_schema=SCHEMA) for n in ("get-sum", "echo", "env", "trigger-x")]


def compiled(data: dict[str, Any]) -> ServerTransforms:
    stored = TransformsIn.model_validate(data).stored()
    assert stored is not None
    return ServerTransforms(stored)


# --- the JSON path language --------------------------------------------------------------
def test_paths_parse_into_steps() -> None:
    assert jsonpath.parse("$.structuredContent.a[0]['x y'][*]..pw.*") == (
        ("key", "structuredContent"),
        ("key", "a"),
        ("index", 0),
        ("key", "x y"),
        ("all", None),
        ("deep", "pw"),
        ("all", None),
    )


@pytest.mark.parametrize("bad", ["x", "$", "$.", "$[", "$..*", "$.a b", "$[1", "$" + ".a" * 300])
def test_bad_paths_are_refused(bad: str) -> None:
    with pytest.raises(jsonpath.PathError):
        jsonpath.parse(bad)


def test_drop_and_replace() -> None:
    doc: dict[str, Any] = {"a": [1, 2, 3], "b": {"pw": 1, "c": {"pw": 2}}, "d": [{"pw": 3}]}
    assert jsonpath.drop(doc, jsonpath.parse("$..pw"))
    assert doc == {"a": [1, 2, 3], "b": {"c": {}}, "d": [{}]}
    assert jsonpath.drop(doc, jsonpath.parse("$.a[*]")) and doc["a"] == []
    assert not jsonpath.drop(doc, jsonpath.parse("$.missing.x"))
    assert jsonpath.replace(doc, jsonpath.parse("$.d[-1]"), lambda v: "X") and doc["d"] == ["X"]


# --- result filters -------------------------------------------------------------------------
def test_a_result_filter_keeps_the_text_copy_of_structured_content_in_step() -> None:
    structured = {"a": 1, "pw": "s3cret", "note": "call 555-1234"}
    result: dict[str, Any] = {
        "content": [
            {"type": "text", "text": '{"a": 1, "pw": "s3cret", "note": "call 555-1234"}'},
            {"type": "text", "text": "or 555-9999"},
        ],
        "structuredContent": structured,
    }
    ResultFilter(
        [
            {"drop": ["$..pw"]},
            {
                "redact": [
                    {"pattern": r"\d{3}-\d{4}"},
                    {"path": "$.structuredContent.a", "replacement": "X"},
                ]
            },
        ]
    ).apply(result)
    assert result["structuredContent"] == {"a": "X", "note": "call [REDACTED]"}
    assert result["content"][0]["text"] == '{"a": "X", "note": "call [REDACTED]"}'
    assert result["content"][1]["text"] == "or [REDACTED]"


def test_a_path_with_a_pattern_redacts_only_there() -> None:
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": "id 42"}],
        "structuredContent": {"x": "id 42", "y": "id 42"},
    }
    rule = {"path": "$.structuredContent.x", "pattern": r"\d+", "replacement": "#"}
    ResultFilter([{"redact": [rule]}]).apply(result)
    assert result["structuredContent"] == {"x": "id #", "y": "id 42"}
    assert result["content"][0]["text"] == "id 42"


# --- what agents see and call ---------------------------------------------------------------
def test_listing_renames_redescribes_hides_and_hides_fixed_arguments() -> None:
    transforms = compiled(
        {
            "tools": {
                "get-sum": {
                    "rename": "add",
                    "description": "Add two numbers.",
                    "defaults": {"a": 1},
                    "fixed": {"b": 100},
                },
                "env": {"hidden": False},  # shown though a glob hides e*
            },
            "hide": ["e*", "trigger-?"],
        }
    )
    shown = {t.name: t for t in transforms.tools(TOOLS)}
    assert set(shown) == {"add", "env"}
    assert shown["add"].description == "Add two numbers."
    assert shown["add"].input_schema == {
        "type": "object",
        "properties": {"a": {"type": "number", "default": 1}},
    }
    assert shown["env"] is TOOLS[2]  # untouched: the same object
    assert transforms.resolve("add") == ("get-sum", ToolTransform({"a": 1}, {"b": 100}, None))
    assert transforms.resolve("get-sum") is None  # renamed: called by its new name only
    assert transforms.resolve("echo") is None  # hidden by the glob
    assert transforms.resolve("trigger-x") is None
    assert transforms.resolve("env") == ("env", None)
    assert transforms.resolve("unknown") == ("unknown", None)  # the backend says
    assert transforms.backend_name("add") == "get-sum"
    assert transforms.touches_arguments


def test_a_hidden_tool_stays_hidden_under_its_new_name() -> None:
    transforms = compiled({"tools": {"echo": {"rename": "say", "hidden": True}}})
    assert [t.name for t in transforms.tools(TOOLS)] == ["get-sum", "env", "trigger-x"]
    assert transforms.resolve("echo") is None
    assert transforms.resolve("say") == ("say", None)  # no such tool: the backend says so


def test_server_results_apply_to_every_tool_and_a_tools_own_after() -> None:
    transforms = compiled(
        {
            "results": {"drop": ["$.structuredContent.x"]},
            "tools": {"echo": {"results": {"drop": ["$.structuredContent.y"]}}},
        }
    )
    plain = transforms.resolve("env")
    own = transforms.resolve("echo")
    assert plain is not None and own is not None
    assert plain[1] is not None and plain[1].results is not None
    assert own[1] is not None and own[1].results is not None
    result = {"content": [], "structuredContent": {"x": 1, "y": 2, "z": 3}}
    own[1].results.apply(result)
    assert result["structuredContent"] == {"z": 3}
    assert not transforms.touches_arguments


async def test_the_transform_stage_fills_defaults_and_forces_fixed_values() -> None:
    transform = ToolTransform({"a": 1, "c": 3}, {"b": 100}, None)
    base = _call()
    call = Call(
        base.principal,
        CallTarget("srv", "add", None, "get-sum", transform),  # type: ignore[arg-type]
        {"b": 5, "c": 4},
        "rest",
    )
    pipeline = Pipeline({"transform": TransformArguments()})
    await pipeline.run(call, _echo)
    assert call.arguments == {"a": 1, "b": 100, "c": 4}  # b overridden, c the agent's own
    assert call.target.backend == "get-sum"


async def _echo(call: Call) -> dict[str, Any]:
    return call.arguments


# --- the registered shape and its checks -----------------------------------------------------
@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"tool": {}}, "tool"),
        ({"tools": {"x": {"renamed": "y"}}}, "renamed"),
        ({"hide": ["[abc"]}, "hide"),
        ({"results": {"drop": ["structuredContent.x"]}}, "drop"),
        ({"results": {"redact": [{"pattern": "("}]}}, "pattern"),
        ({"results": {"redact": [{"replacement": "x"}]}}, "redact"),
        ({"tools": {"x": {"rename": "has space"}}}, "rename"),
        ({"tools": {"x": {"defaults": {"a": 1}, "fixed": {"a": 2}}}}, "x"),
    ],
)
def test_malformed_transforms_are_refused_naming_the_field(
    data: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        TransformsIn.model_validate(data)
    assert any(where in ".".join(map(str, e["loc"])) for e in caught.value.errors())


def test_renames_that_collide_are_refused() -> None:
    two = TransformsIn.model_validate(
        {"tools": {"echo": {"rename": "say"}, "env": {"rename": "say"}}}
    )
    with pytest.raises(InvalidInput) as caught:
        check_transforms(two, None)
    assert caught.value.details["errors"][0]["field"] == "transforms.tools.env.rename"
    onto = TransformsIn.model_validate({"tools": {"echo": {"rename": "env"}}})
    check_transforms(onto, None)  # the catalog is not known yet: nothing to collide with
    with pytest.raises(InvalidInput) as caught:
        check_transforms(onto, TOOLS)
    assert caught.value.details["errors"][0]["field"] == "transforms.tools.echo.rename"
    # Onto a name another rename frees, or a hidden tool's: fine.
    check_transforms(
        TransformsIn.model_validate(
            {"tools": {"echo": {"rename": "env"}, "env": {"rename": "environment"}}}
        ),
        TOOLS,
    )


def test_arguments_a_known_tool_does_not_take_are_refused() -> None:
    bad = TransformsIn.model_validate({"tools": {"get-sum": {"fixed": {"c": 1}}}})
    with pytest.raises(InvalidInput) as caught:
        check_transforms(bad, TOOLS)
    assert caught.value.details["errors"][0]["field"] == "transforms.tools.get-sum.fixed.c"
    assert stored_transforms(bad, None) == {"tools": {"get-sum": {"fixed": {"c": 1}}}}


def test_stored_shape_and_config_round_trip() -> None:
    assert TransformsIn.model_validate({}).stored() is None
    assert TransformsIn.model_validate({"tools": {"x": {}}, "results": {}}).stored() is None
    stored = {"hide": ["a*"]}
    config = join_config({"url": "http://x"}, stored)
    assert split_config(config) == ({"url": "http://x"}, stored)
    assert join_config(config, None) == {"url": "http://x"}
    assert split_config({"url": "http://x"}) == ({"url": "http://x"}, None)


def test_the_output_schema_follows_what_results_lose() -> None:
    schema = {
        "type": "object",
        "properties": {
            "temperature": {"type": "number"},
            "conditions": {"type": "string", "enum": ["Cloudy", "Sunny"]},
            "humidity": {"type": "number"},
            "nested": {"type": "object", "properties": {"pw": {"type": "string"}}},
        },
        "required": ["temperature", "conditions", "humidity"],
    }
    filtered = ResultFilter(
        [
            {
                "drop": ["$.structuredContent.humidity", "$..pw", "$.content[0]"],
                "redact": [{"path": "$.structuredContent.temperature"}, {"pattern": "y"}],
            }
        ]
    )
    shown = filtered.output_schema(schema)
    assert shown == {
        "type": "object",
        "properties": {
            "temperature": {},
            "conditions": {"type": "string"},
            "nested": {"type": "object", "properties": {}},
        },
        "required": ["temperature", "conditions"],
    }
    assert "humidity" in schema["properties"]  # the catalog's own is left alone
    tool = types.Tool(name="w", input_schema={"type": "object"}, output_schema=schema)
    listed = compiled({"results": {"drop": ["$.structuredContent.humidity"]}}).tool(tool)
    assert listed is not None and listed.output_schema is not None
    assert "humidity" not in listed.output_schema["properties"]
