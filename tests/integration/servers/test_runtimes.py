"""Each runtime adapter against a real MCP server: register, list, call."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.servers.conftest import EVERYTHING, Gateway, text_of

GENERATED_SOURCE = '''
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("shop")


@server.tool()
def price(item: str, quantity: int = 1) -> str:
    """Price of an item."""
    return f"{quantity} x {item} = {quantity * 2.5:.2f}"


@server.tool()
def fail() -> str:
    """Always fails."""
    raise ToolError("out of stock")
'''


async def _check_everything(gw: Gateway, name: str) -> None:
    tools = await gw.tools(name)
    assert {"echo", "get-sum"} <= set(tools), tools
    result = await gw.execute(f"{name}__echo", {"message": "hello gateway"})
    assert result["isError"] is False
    assert "hello gateway" in text_of(result)
    result = await gw.execute(f"{name}__get-sum", {"a": 2, "b": 40})
    assert "42" in text_of(result)
    health = await gw.health(name)
    assert health["status"] == "healthy"
    assert health["protocol_version"] == "2025-11-25"  # server-everything speaks the handshake era


async def test_npx_stdio_server(gw: Gateway) -> None:
    r = await gw.register(
        {"name": "everything", "type": "npx", "config": {"package": EVERYTHING, "args": ["stdio"]}}
    )
    assert r.status_code == 201, r.text
    assert r.json()["tool_count"] >= 10
    await _check_everything(gw, "everything")
    # resources and prompts are catalogued too
    kinds = {}
    for kind in ("resource", "prompt"):
        page = await gw.client.get(
            "/api/v1/servers/everything/tools", params={"kind": kind}, headers=gw.auth()
        )
        kinds[kind] = page.json()["total"]
    assert kinds["resource"] > 0 and kinds["prompt"] > 0


@pytest.mark.parametrize(
    ("mode", "transport"), [("streamableHttp", "auto"), ("sse", "auto"), ("sse", "sse")]
)
async def test_remote_server(
    gw: Gateway, everything_http: Callable[[str], str], mode: str, transport: str
) -> None:
    url = everything_http(mode)
    r = await gw.register(
        {"name": "remote-ev", "type": "remote", "config": {"url": url, "transport": transport}}
    )
    assert r.status_code == 201, r.text
    await _check_everything(gw, "remote-ev")


async def test_uvx_server(gw: Gateway) -> None:
    if (
        shutil.which("uvx") is None
        and not (Path(__import__("sys").executable).parent / "uvx").exists()
    ):
        pytest.fail("uvx is needed for this test: `make test` puts .tools/bin (uv, uvx) on PATH")
    r = await gw.register({"name": "time", "type": "uvx", "config": {"package": "mcp-server-time"}})
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    assert "get_current_time" in await gw.tools("time")
    result = await gw.execute("time__get_current_time", {"timezone": "UTC"})
    assert result["isError"] is False, result
    assert "UTC" in text_of(result)


async def test_uvx_falls_back_to_a_managed_venv(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.servers.runtimes.stdio as stdio

    monkeypatch.setattr(stdio, "_which", lambda name: None if name == "uvx" else shutil.which(name))
    r = await gw.register(
        {"name": "time-venv", "type": "uvx", "config": {"package": "mcp-server-time"}}
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    result = await gw.execute("time-venv__get_current_time", {"timezone": "Europe/Paris"})
    assert "Europe/Paris" in text_of(result)
    venvs = list((Path(gw.app.state.gw.settings.data_dir) / "venvs").iterdir())  # type: ignore[attr-defined]
    assert any(v.name.startswith("mcp-server-time") for v in venvs)


async def test_generated_server_from_source(gw: Gateway) -> None:
    r = await gw.register(
        {"name": "shop", "type": "generated", "config": {"source": GENERATED_SOURCE}}
    )
    assert r.status_code == 201, r.text
    assert sorted(await gw.tools("shop")) == ["fail", "price"]
    result = await gw.execute("shop__price", {"item": "apple", "quantity": 4})
    assert text_of(result) == "4 x apple = 10.00"
    failed = await gw.execute("shop__fail")
    assert failed["isError"] is True
    assert "out of stock" in text_of(failed)
    unknown = await gw.execute("shop__nope")
    assert unknown["isError"] is True


async def test_generated_server_from_fastmcp(gw: Gateway) -> None:
    source = (
        "import fastmcp\n"
        "app = fastmcp.FastMCP('fm')\n"
        "@app.tool\n"
        "def shout(text: str) -> str:\n"
        "    return text.upper()\n"
    )
    r = await gw.register(
        {"name": "fm", "type": "generated", "config": {"source": source, "attribute": "app"}}
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()["health"]
    assert text_of(await gw.execute("fm__shout", {"text": "hi"})) == "HI"


async def test_broken_generated_source_reports_unhealthy(gw: Gateway) -> None:
    r = await gw.register(
        {"name": "broken", "type": "generated", "config": {"source": "raise RuntimeError('nope')"}}
    )
    assert r.status_code == 201
    health = r.json()["health"]
    assert health["status"] == "unhealthy"
    assert "nope" in health["last_error"]
    ready = (await gw.client.get("/readyz")).json()
    assert ready["status"] == "ready"  # one broken backend does not make the gateway unready
    assert ready["checks"]["servers"]["broken"]["status"] == "unhealthy"
    result = await gw.execute("broken__anything")
    assert result["isError"] is True and "broken" in text_of(result)


async def test_bundle_of_registered_and_inline_servers(gw: Gateway) -> None:
    await gw.register({"name": "shop", "type": "generated", "config": {"source": GENERATED_SOURCE}})
    r = await gw.register(
        {
            "name": "kit",
            "type": "bundle",
            "config": {
                "members": [
                    {"name": "store", "server": "shop"},
                    {
                        "name": "calc",
                        "type": "generated",
                        "config": {"module": "gateway.servers.essentials.calculator:server"},
                    },
                ]
            },
        }
    )
    assert r.status_code == 201, r.text
    tools = await gw.tools("kit")
    assert {"store_price", "calc_evaluate"} <= set(tools)
    assert text_of(await gw.execute("kit__calc_evaluate", {"expression": "2^10"})) == "1024"
    assert "apple" in text_of(await gw.execute("kit__store_price", {"item": "apple"}))
    missing = await gw.execute("kit__nomember_x")
    assert missing["isError"] is True


async def test_remote_modern_era_server(gw: Gateway, tmp_path: Path) -> None:
    """A 2026-07-28 (stateless) Streamable HTTP server: the gateway speaks the new era too."""
    import subprocess
    import sys

    from tests.integration.servers.conftest import _wait_port
    from tests.support import free_port

    port = free_port()
    script = tmp_path / "modern.py"
    script.write_text(
        GENERATED_SOURCE
        + "\nimport uvicorn\n"
        + f"uvicorn.run(server.streamable_http_app(), host='127.0.0.1', port={port}, log_level='warning')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_port(port, proc, timeout=30)
        r = await gw.register(
            {"name": "modern", "type": "remote", "config": {"url": f"http://127.0.0.1:{port}/mcp"}}
        )
        assert r.status_code == 201 and r.json()["health"]["status"] == "healthy", r.text
        assert r.json()["health"]["protocol_version"] == "2026-07-28"
        assert (
            text_of(await gw.execute("modern__price", {"item": "pear", "quantity": 2}))
            == "2 x pear = 5.00"
        )
    finally:
        proc.kill()  # uvicorn would wait for our still-open session on SIGTERM
        proc.wait(timeout=10)
