"""Sandboxes as agents use them: the SANDBOX_* tools and RUN_SKILL_SCRIPT on `/mcp`.

A real `mcpgw serve` with the embedded default provider (`local`, bubblewrap) and a
real MCP client (the official SDK's) in both protocol eras. Each user only ever
reaches their own sandboxes; without a `sandbox_id` a tool acts on the sandbox bound
to the agent's session (2025-11-25) or, stateless (2026-07-28), to its API key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from mcp import Client, types

from tests.integration.mcp.test_endpoint import connect
from tests.integration.sandboxes.conftest import need_bwrap
from tests.support import BOOT, Server
from tests.support_skills import skill_zip

ERAS = pytest.mark.parametrize(("mode", "era"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
SANDBOX_TOOLS = {
    "SANDBOX_CREATE",
    "SANDBOX_EXEC",
    "SANDBOX_READ_FILE",
    "SANDBOX_WRITE_FILE",
    "SANDBOX_LIST_FILES",
    "SANDBOX_STOP",
    "RUN_SKILL_SCRIPT",
}

SCRIPT = b"""import os, sys
name = sys.argv[1] if len(sys.argv) > 1 else "nobody"
with open("greeting.txt", "w") as f:
    f.write(f"hello {name} from {os.path.basename(os.environ['SKILL_DIR'])}")
print(open(os.path.join(os.environ["SKILL_DIR"], "references", "data.txt")).read().strip())
"""


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _key(server: Server, email: str, role: str = "developer") -> str:
    user = httpx.post(
        f"{server.url}/api/v1/users", json={"email": email, "role": role}, headers=_auth(BOOT)
    ).json()
    r = httpx.post(
        f"{server.url}/api/v1/keys",
        json={"name": "agent", "user_id": user["id"]},
        headers=_auth(BOOT),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


@pytest.fixture
def gw(server_factory: type[Server]) -> Server:
    need_bwrap()
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_SANDBOX_PROVIDER="local")
    server.wait_ready()
    return server


async def call(client: Client, tool: str, /, **arguments: Any) -> types.CallToolResult:
    return await client.call_tool(tool, arguments)


def text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def data(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


@ERAS
async def test_agent_runs_code_and_reads_the_output_file(gw: Server, mode: str, era: str) -> None:
    alice = _key(gw, "alice@example.com")
    async with connect(f"{gw.url}/mcp", key=alice, mode=mode) as client:
        assert client.protocol_version == era
        names = {t.name for t in (await client.list_tools()).tools}
        assert names >= SANDBOX_TOOLS

        ran = data(
            await call(
                client,
                "SANDBOX_EXEC",
                code="import json\nopen('out.json','w').write(json.dumps({'sum': 2 + 40}))\n"
                "print('written')",
                language="python",
            )
        )
        assert ran["exit_code"] == 0 and ran["stdout"] == "written\n", ran
        sandbox_id = ran["sandbox_id"]

        read = data(await call(client, "SANDBOX_READ_FILE", path="out.json"))
        assert json.loads(read["content"]) == {"sum": 42}
        assert read["sandbox_id"] == sandbox_id  # the session's sandbox, again

        listed = data(await call(client, "SANDBOX_LIST_FILES"))
        assert {"name": "out.json", "path": "out.json", "type": "file", "size": 11} in listed[
            "entries"
        ]

        # A shell command, stdin, a non-zero exit: reported, not a tool error.
        shell = await call(client, "SANDBOX_EXEC", command="cat; echo oops >&2; exit 3", stdin="in")
        assert data(shell)["exit_code"] == 3
        assert "exit code 3" in text(shell) and "oops" in text(shell) and "in" in text(shell)

    # The REST API sees the same sandbox, owned by alice.
    r = httpx.get(f"{gw.url}/api/v1/sandboxes/{sandbox_id}", headers=_auth(alice))
    assert r.status_code == 200 and r.json()["status"] == "running"


async def test_binary_files_stop_and_resume_keep_files(gw: Server) -> None:
    alice = _key(gw, "alice@example.com")
    blob = bytes(range(256))
    async with connect(f"{gw.url}/mcp", key=alice, mode="legacy") as client:
        wrote = data(
            await call(
                client,
                "SANDBOX_WRITE_FILE",
                path="bin/data.bin",
                content=base64.b64encode(blob).decode(),
                encoding="base64",
            )
        )
        assert wrote["size"] == 256
        sandbox_id = wrote["sandbox_id"]
        stopped = data(await call(client, "SANDBOX_STOP"))
        assert stopped["sandbox_id"] == sandbox_id
        r = httpx.get(f"{gw.url}/api/v1/sandboxes/{sandbox_id}", headers=_auth(alice))
        assert r.json()["status"] == "stopped"

        # The next exec resumes the session's sandbox; the file is still there.
        ran = data(await call(client, "SANDBOX_EXEC", command="wc -c < bin/data.bin"))
        assert ran["sandbox_id"] == sandbox_id and ran["stdout"].strip() == "256"
        read = data(await call(client, "SANDBOX_READ_FILE", path="bin/data.bin"))
        assert read["encoding"] == "base64" and base64.b64decode(read["content"]) == blob

        bad = await call(client, "SANDBOX_WRITE_FILE", path="x", content="%%%", encoding="base64")
        assert bad.is_error and "base64" in text(bad)


async def test_cannot_touch_another_users_sandbox(gw: Server) -> None:
    alice, bob = _key(gw, "alice@example.com"), _key(gw, "bob@example.com")
    async with connect(f"{gw.url}/mcp", key=alice) as client:
        made = data(await call(client, "SANDBOX_CREATE", template="python", name="mine"))
        alice_box = made["sandbox_id"]
        data(
            await call(
                client, "SANDBOX_WRITE_FILE", sandbox_id=alice_box, path="s.txt", content="x"
            )
        )
    async with connect(f"{gw.url}/mcp", key=bob) as client:
        for name, extra in [
            ("SANDBOX_EXEC", {"command": "id"}),
            ("SANDBOX_READ_FILE", {"path": "s.txt"}),
            ("SANDBOX_WRITE_FILE", {"path": "s.txt", "content": "y"}),
            ("SANDBOX_LIST_FILES", {}),
            ("SANDBOX_STOP", {}),
        ]:
            result = await call(client, name, sandbox_id=alice_box, **extra)
            assert result.is_error, (name, text(result))
            assert "sandbox_not_found" in text(result), text(result)
        # Bob's own calls get his own sandbox, never alice's.
        own = data(await call(client, "SANDBOX_EXEC", command="ls"))
        assert own["sandbox_id"] != alice_box and "s.txt" not in own["stdout"]
    # alice's file is untouched.
    r = httpx.get(
        f"{gw.url}/api/v1/sandboxes/{alice_box}/files",
        params={"path": "s.txt"},
        headers=_auth(alice),
    )
    assert r.status_code == 200 and r.content == b"x"


async def test_permissions_decide_which_tools_are_listed_and_callable(gw: Server) -> None:
    viewer = _key(gw, "viewer@example.com", role="viewer")
    async with connect(f"{gw.url}/mcp", key=viewer) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names & SANDBOX_TOOLS == {"SANDBOX_READ_FILE", "SANDBOX_LIST_FILES"}
        refused = await call(client, "SANDBOX_EXEC", command="id")
        assert refused.is_error and "sandboxes:execute" in text(refused)


async def test_bad_arguments_are_tool_errors(gw: Server) -> None:
    async with connect(f"{gw.url}/mcp") as client:
        neither = await call(client, "SANDBOX_EXEC")
        assert neither.is_error and "command" in text(neither)
        unknown = await call(client, "SANDBOX_EXEC", command="id", bogus="zsh")
        assert unknown.is_error and "bogus" in text(unknown)
        escape = await call(client, "SANDBOX_READ_FILE", path="../../etc/passwd")
        assert escape.is_error and "sandbox_path" in text(escape), text(escape)
        missing = await call(client, "SANDBOX_READ_FILE", path="nope.txt")
        assert missing.is_error and "sandbox_file_not_found" in text(missing)
        template = await call(client, "SANDBOX_CREATE", template="no-such")
        assert template.is_error and "template_not_found" in text(template)


@ERAS
async def test_run_skill_script_copies_the_skill_in(gw: Server, mode: str, era: str) -> None:
    alice = _key(gw, "alice@example.com")
    package = skill_zip(
        "greeter",
        {"scripts/greet.py": SCRIPT, "references/data.txt": b"reference data\n"},
    )
    r = httpx.post(
        f"{gw.url}/api/v1/skills/upload",
        files={"file": ("greeter.skill", package)},
        headers=_auth(alice),
    )
    assert r.status_code == 201, r.text
    async with connect(f"{gw.url}/mcp", key=alice, mode=mode) as client:
        ran = data(
            await call(client, "RUN_SKILL_SCRIPT", skill="greeter", script="greet.py", args=["ada"])
        )
        assert ran["exit_code"] == 0, ran
        assert ran["stdout"] == "reference data\n"
        greeting = data(await call(client, "SANDBOX_READ_FILE", path="greeting.txt"))
        assert greeting["content"] == "hello ada from greeter"
        copied = data(await call(client, "SANDBOX_LIST_FILES", path="skills/greeter/scripts"))
        assert [e["name"] for e in copied["entries"]] == ["greet.py"]

        # Run again: the same copy is reused; an unknown script names the ones there are.
        again = data(
            await call(client, "RUN_SKILL_SCRIPT", skill="greeter", script="scripts/greet.py")
        )
        assert again["exit_code"] == 0
        missing = await call(client, "RUN_SKILL_SCRIPT", skill="greeter", script="nope.py")
        assert missing.is_error and "scripts/greet.py" in text(missing)
        unknown = await call(client, "RUN_SKILL_SCRIPT", skill="no-such", script="x.py")
        assert unknown.is_error and "no-such" in text(unknown)

    # Bob cannot run alice's private skill.
    bob = _key(gw, "bob@example.com")
    async with connect(f"{gw.url}/mcp", key=bob, mode=mode) as client:
        hidden = await call(client, "RUN_SKILL_SCRIPT", skill="greeter", script="greet.py")
        assert hidden.is_error


async def test_search_execute_mode_finds_and_runs_them(server_factory: type[Server]) -> None:
    """In search_execute mode the list stays the two meta-tools (plus skills'): the
    sandbox tools are found with SEARCH_TOOLS and run through EXECUTE_TOOL."""
    need_bwrap()
    gw = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_INTERFACE_MODE="search_execute")
    gw.wait_ready()
    async with connect(f"{gw.url}/mcp") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"SEARCH_TOOLS", "EXECUTE_TOOL"}, names
        found = data(
            await call(client, "SEARCH_TOOLS", query="run python code in a sandbox", limit=3)
        )
        assert found["tools"][0]["name"] == "SANDBOX_EXEC", found
        assert "code" in found["tools"][0]["inputSchema"]["properties"]
        result = await call(
            client,
            "EXECUTE_TOOL",
            tool="SANDBOX_EXEC",
            arguments={"code": "print(6 * 7)", "language": "python"},
        )
        assert data(result)["stdout"] == "42\n"
        direct = await call(client, "SANDBOX_EXEC", command="echo direct")
        assert data(direct)["stdout"] == "direct\n"  # unlisted, still callable by name
