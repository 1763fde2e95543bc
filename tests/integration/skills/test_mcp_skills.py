"""Skills served to agents over `/mcp`, with real MCP clients against a real gateway.

Three ways in: the Skills extension `io.modelcontextprotocol/skills` (SEP-2640:
`skills/list`, `skills/get`, `resources/directory/read`, files as `skill://`
resources), the LOAD_SKILL / READ_SKILL_FILE tools for clients without it, and
plain `resources/list` + `resources/read`. The extension's requests are sent with
FastMCP's wire models (an independent implementation of the SEP), and answers are
validated against them.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from fastmcp.skills.models import (
    GetSkillParams,
    GetSkillRequest,
    GetSkillResult,
    ListSkillsParams,
    ListSkillsRequest,
    ListSkillsResult,
)
from mcp import Client, types
from mcp.shared.exceptions import MCPError
from pydantic import ConfigDict, TypeAdapter

from skills.mcp import SkillsMcp
from tests.conftest import BOOTSTRAP_KEY, AppHarness
from tests.integration.mcp.test_endpoint import connect
from tests.support import BOOT, Server
from tests.support_skills import FIXTURES, VALID, skill_md, skill_zip, zip_folder

EXTENSION = "io.modelcontextprotocol/skills"
ERAS = pytest.mark.parametrize(("mode", "era"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
RAW = TypeAdapter(dict[str, Any])
VALID_DIR = FIXTURES / "valid"
NAMES = sorted(f.name for f in VALID)


class DirectoryParams(types.PaginatedRequestParams):
    uri: str


class DirectoryRequest(types.Request[DirectoryParams, str]):
    method: str = "resources/directory/read"
    params: DirectoryParams


class AnyParams(types.RequestParams):
    """Params sent as given (to send malformed ones)."""

    model_config = ConfigDict(extra="allow")


class RawRequest(types.Request[AnyParams, str]):
    params: AnyParams


@dataclass
class Gateway:
    server: Server
    alice: str  # owns the private skill alice-secret
    bob: str  # another developer
    rest: dict[str, dict[str, Any]]  # GET /api/v1/skills/{name}, as the admin sees it

    @property
    def mcp(self) -> str:
        return f"{self.server.url}/mcp"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _upload(server: Server, key: str, data: bytes, name: str, **params: str) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/v1/skills/upload",
        params=params,
        files={"file": (name, data)},
        headers=_auth(key),
    )
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def _user_key(server: Server, email: str, **key: Any) -> str:
    user = httpx.post(
        f"{server.url}/api/v1/users",
        json={"email": email, "role": "developer"},
        headers=_auth(BOOT),
    ).json()
    r = httpx.post(
        f"{server.url}/api/v1/keys",
        json={"name": "t", "user_id": user["id"], **key},
        headers=_auth(BOOT),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


@pytest.fixture
def gw(server_factory: type[Server]) -> Gateway:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    for folder in VALID:
        _upload(server, BOOT, zip_folder(folder), f"{folder.name}.skill", visibility="public")
    alice = _user_key(server, "alice@example.com")
    bob = _user_key(server, "bob@example.com")
    _upload(server, alice, skill_zip("alice-secret", {"notes/plan.md": b"# plan\n"}), "a.skill")
    rest = {
        name: httpx.get(f"{server.url}/api/v1/skills/{name}", headers=_auth(BOOT)).json()
        for name in [*NAMES, "alice-secret"]
    }
    return Gateway(server, alice, bob, rest)


async def _list(client: Client, cursor: str | None = None) -> dict[str, Any]:
    request = ListSkillsRequest(params=ListSkillsParams(cursor=cursor))
    return await client.session.send_request(request, RAW)


async def _get(client: Client, uri: str) -> dict[str, Any]:
    return await client.session.send_request(GetSkillRequest(params=GetSkillParams(uri=uri)), RAW)


async def _directory(client: Client, uri: str) -> dict[str, Any]:
    request = DirectoryRequest(params=DirectoryParams(uri=uri))
    return await client.session.send_request(request, RAW)


async def _read_bytes(client: Client, uri: str) -> tuple[bytes, str | None]:
    contents = (await client.read_resource(uri)).contents
    assert len(contents) == 1 and contents[0].uri == uri
    c = contents[0]
    if isinstance(c, types.TextResourceContents):
        return c.text.encode(), c.mime_type
    return base64.b64decode(c.blob), c.mime_type


def _manifest(rest: dict[str, Any]) -> dict[str, tuple[str, int]]:
    name = rest["name"]
    return {
        f"skill://{name}/{f['path']}": (f"sha256:{f['sha256']}", f["size"]) for f in rest["files"]
    }


async def _error_code(call: Any) -> int:
    with pytest.raises(MCPError) as caught:
        await call
    return caught.value.error.code


# --- (a) and (e): the extension, in both protocol eras -----------------------------------
@ERAS
async def test_extension_lists_gets_and_serves_files(gw: Gateway, mode: str, era: str) -> None:
    async with connect(gw.mcp, mode=mode) as client:
        assert client.protocol_version == era
        capabilities = client.server_capabilities
        # the skills extension, beside the tasks extension tool calls offer
        assert capabilities.extensions is not None
        assert capabilities.extensions[EXTENSION] == {"directoryRead": True}
        assert set(capabilities.extensions) <= {EXTENSION, "io.modelcontextprotocol/tasks"}
        assert capabilities.resources is not None  # the extension requires it

        listed = await _list(client)
        ListSkillsResult.model_validate(listed)  # the shape an independent client accepts
        assert ("ttlMs" in listed and listed["cacheScope"] == "private") == (era == "2026-07-28")
        entries = {e["frontmatter"]["name"]: e for e in listed["skills"]}
        assert sorted(entries) == sorted([*NAMES, "alice-secret"])  # an admin sees all
        for name, entry in entries.items():
            rest = gw.rest[name]
            assert entry["uri"] == f"skill://{name}/SKILL.md"
            assert entry["frontmatter"] == rest["frontmatter"]  # verbatim: all strings here
            digests = {r["uri"]: (r["digest"], r["size"]) for r in entry["resources"]}
            assert digests == _manifest(rest)  # the same digests as the REST API's

        got = await _get(client, "skill://pdf-processing/SKILL.md")
        GetSkillResult.model_validate(got)
        assert got["skill"] == entries["pdf-processing"]
        assert "nextCursor" not in got

        # Every file, read as a resource, matches its manifest entry (what a host verifies).
        for uri, (digest, size) in [*_manifest(gw.rest["pdf-processing"]).items()]:
            data, mime = await _read_bytes(client, uri)
            assert (f"sha256:{hashlib.sha256(data).hexdigest()}", len(data)) == (digest, size)
            path = uri.removeprefix("skill://pdf-processing/")
            assert data == (VALID_DIR / "pdf-processing" / path).read_bytes()
            if path == "SKILL.md":
                assert mime == "text/markdown"
        logo, mime = await _read_bytes(client, "skill://brand-guidelines/assets/logo.png")
        assert logo == (VALID_DIR / "brand-guidelines/assets/logo.png").read_bytes()
        assert mime == "image/png"

        root = await _directory(client, "skill://pdf-processing")
        kinds = {r["name"]: r["mimeType"] for r in root["resources"]}
        assert kinds == {
            "LICENSE.txt": "text/plain",
            "SKILL.md": "text/markdown",
            "assets": "inode/directory",
            "references": "inode/directory",
            "scripts": "inode/directory",
        }
        references = await _directory(client, "skill://pdf-processing/references")
        assert [r["uri"] for r in references["resources"]] == [
            "skill://pdf-processing/references/FORMS.md",
            "skill://pdf-processing/references/REFERENCE.md",
        ]


async def test_a_real_skills_client_verifies_every_file(gw: Gateway) -> None:
    """FastMCP's SEP-2640 client (2026-07-28 only) lists, gets and reads; we verify digests."""
    import fastmcp
    from fastmcp.skills.client import SkillsClientExtension

    async with fastmcp.Client(gw.mcp, auth=gw.bob, extensions=[SkillsClientExtension()]) as client:
        skills = await client.list_skills()
        assert sorted(s.frontmatter.name for s in skills) == NAMES  # not alice's
        skill = await client.get_skill("skill://csv-insights/SKILL.md")
        assert skill.frontmatter.metadata == {
            "author": "data-team",
            "version": "2.0",
            "category": "analytics",
        }
        assert isinstance(skill.resources, list) and len(skill.resources) == 4
        for resource in skill.resources:
            (contents,) = await client.read_resource(resource.uri)
            data = (
                contents.text.encode()
                if isinstance(contents, types.TextResourceContents)
                else base64.b64decode(contents.blob)
            )
            assert f"sha256:{hashlib.sha256(data).hexdigest()}" == resource.digest
            assert len(data) == resource.size


async def test_legacy_initialize_declares_the_extension(gw: Gateway) -> None:
    """The SDK drops `capabilities.extensions` from 2025-11-25 handshakes; the gateway
    sends it, as the SEP's other implementations do."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    r = httpx.post(
        gw.mcp,
        json=init,
        headers={
            **_auth(BOOT),
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        },
    )
    assert r.status_code == 200  # JSON or one SSE event: the declaration is in the body
    assert '"io.modelcontextprotocol/skills":{"directoryRead":true}' in r.text.replace(" ", "")


# --- (b): the tool fallback ----------------------------------------------------------------
@ERAS
async def test_tool_fallback_catalog_load_and_read(gw: Gateway, mode: str, era: str) -> None:
    async with connect(gw.mcp, key=gw.bob, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"LOAD_SKILL", "READ_SKILL_FILE"} <= set(tools)
        assert "LIST_SKILLS" not in tools  # the catalog fits LOAD_SKILL's description
        catalog = tools["LOAD_SKILL"].description or ""
        for name in NAMES:
            assert f"- {name}: {gw.rest[name]['description'][:60]}" in catalog
        assert "alice-secret" not in catalog
        assert len(catalog) < 2_000  # names and descriptions only, no bodies

        loaded = await client.call_tool("LOAD_SKILL", {"name": "pdf-processing"})
        assert loaded.is_error is False
        rest = gw.rest["pdf-processing"]
        assert loaded.content[0].text == rest["body"]  # type: ignore[union-attr]
        assert "- references/FORMS.md (205 bytes)" in loaded.content[1].text  # type: ignore[union-attr]
        assert loaded.structured_content is not None
        assert loaded.structured_content["files"] == [
            {"path": f["path"], "size": f["size"], "digest": f"sha256:{f['sha256']}"}
            for f in rest["files"]
        ]
        assert loaded.structured_content["uri"] == "skill://pdf-processing/SKILL.md"

        text = await client.call_tool(
            "READ_SKILL_FILE", {"name": "pdf-processing", "path": "references/FORMS.md"}
        )
        expected = (VALID_DIR / "pdf-processing/references/FORMS.md").read_text()
        assert text.is_error is False and text.content[0].text == expected  # type: ignore[union-attr]
        for skill, path, mime in [
            ("brand-guidelines", "assets/logo.png", "image/png"),
            ("csv-insights", "assets/sample.csv.gz", "application/gzip"),
        ]:
            binary = await client.call_tool("READ_SKILL_FILE", {"name": skill, "path": path})
            (block,) = binary.content
            assert isinstance(block, types.EmbeddedResource)
            assert isinstance(block.resource, types.BlobResourceContents)
            assert block.resource.uri == f"skill://{skill}/{path}"
            assert block.resource.mime_type == mime
            assert base64.b64decode(block.resource.blob) == (VALID_DIR / skill / path).read_bytes()


async def test_skill_tools_coexist_with_interface_modes(gw: Gateway) -> None:
    def key(mode: str) -> str:
        r = httpx.post(
            f"{gw.server.url}/api/v1/keys",
            json={"name": mode, "interface_mode": mode},
            headers=_auth(BOOT),
        )
        return str(r.json()["key"])

    async with connect(gw.mcp, key=key("search_execute")) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert names == ["SEARCH_TOOLS", "EXECUTE_TOOL", "LOAD_SKILL", "READ_SKILL_FILE"]
        found = await client.call_tool(
            "SEARCH_TOOLS", {"query": "load skill read file", "limit": 50}
        )
        assert found.structured_content is not None
        hits = {t["name"] for t in found.structured_content["tools"]}
        # Listed in this mode, so not searched (RUN_SKILL_SCRIPT, a sandbox tool, may be).
        assert not hits & {"LOAD_SKILL", "READ_SKILL_FILE", "LIST_SKILLS"}, hits
        via = await client.call_tool(
            "EXECUTE_TOOL", {"tool": "LOAD_SKILL", "arguments": {"name": "hello-world"}}
        )
        assert via.content[0].text == gw.rest["hello-world"]["body"]  # type: ignore[union-attr]
    async with connect(gw.mcp, key=key("list")) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert names[:2] == ["LOAD_SKILL", "READ_SKILL_FILE"]
        assert "essentials__calculator_evaluate" in names
        assert not any(n.endswith(("__LOAD_SKILL", "__READ_SKILL_FILE")) for n in names)


# --- plain resources, and pagination merged with the backends' --------------------------
async def test_resources_list_merges_skills_across_pages(server_factory: type[Server]) -> None:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_MCP_PAGE_SIZE="2")
    server.wait_ready()
    for folder in VALID:
        _upload(server, BOOT, zip_folder(folder), f"{folder.name}.skill")
    async with connect(f"{server.url}/mcp") as client:
        seen: list[types.Resource] = []
        cursor, pages = None, 0
        while True:
            page = await client.list_resources(cursor=cursor)
            seen += page.resources
            pages += 1
            cursor = page.next_cursor
            if not cursor:
                break
        skills = [r for r in seen if r.uri.startswith("skill://")]
        assert [r.name for r in skills] == NAMES
        assert all(r.mime_type == "text/markdown" and r.uri.endswith("/SKILL.md") for r in skills)
        assert len({r.uri for r in seen}) == len(seen) and pages == -(-len(seen) // 2)
        hello = next(r for r in skills if r.name == "hello-world")
        assert hello.description == skill_description("hello-world")
        templates = (await client.list_resource_templates()).resource_templates
        assert "skill://{skill}/{+path}" in [t.uri_template for t in templates]
        # tools: the skill tools ride on the first page only, every page stays unique
        names: list[str] = []
        cursor = None
        while True:
            tools = await client.list_tools(cursor=cursor)
            names += [t.name for t in tools.tools]
            cursor = tools.next_cursor
            if not cursor:
                break
        assert names[:2] == ["LOAD_SKILL", "READ_SKILL_FILE"] and len(names) == len(set(names))


def skill_description(name: str) -> str:
    return str(
        yaml.safe_load((VALID_DIR / name / "SKILL.md").read_text().split("---")[1])["description"]
    )


# --- (c): RBAC -----------------------------------------------------------------------------
async def test_a_private_skill_is_invisible_by_every_route(gw: Gateway) -> None:
    secret = "skill://alice-secret/SKILL.md"
    async with connect(gw.mcp, key=gw.bob) as client:
        listed = await _list(client)
        assert sorted(e["frontmatter"]["name"] for e in listed["skills"]) == NAMES
        assert await _error_code(_get(client, secret)) == -32602
        assert await _error_code(client.read_resource(secret)) == -32602
        assert (
            await _error_code(client.read_resource("skill://alice-secret/notes/plan.md")) == -32602
        )
        assert await _error_code(_directory(client, "skill://alice-secret")) == -32602
        resources = [r.uri for r in (await client.list_resources()).resources]
        assert "skill://hello-world/SKILL.md" in resources and secret not in resources
        for name, args in [
            ("LOAD_SKILL", {"name": "alice-secret"}),
            ("READ_SKILL_FILE", {"name": "alice-secret", "path": "SKILL.md"}),
            ("EXECUTE_TOOL", {"tool": "LOAD_SKILL", "arguments": {"name": "alice-secret"}}),
        ]:
            result = await client.call_tool(name, args)
            assert result.is_error is True, name
            assert "no skill named 'alice-secret'" in result.content[0].text  # type: ignore[union-attr]
            assert "plan" not in result.content[0].text  # type: ignore[union-attr]
    async with connect(gw.mcp, key=gw.alice) as client:
        assert (await _get(client, secret))["skill"]["uri"] == secret
        loaded = await client.call_tool("LOAD_SKILL", {"name": "alice-secret"})
        assert loaded.is_error is False and "notes/plan.md" in loaded.content[1].text  # type: ignore[union-attr]
        plan = await client.call_tool(
            "READ_SKILL_FILE", {"name": "alice-secret", "path": "notes/plan.md"}
        )
        assert plan.content[0].text == "# plan\n"  # type: ignore[union-attr]


async def test_without_skills_read_there_are_no_skills(gw: Gateway) -> None:
    key = _user_key(gw.server, "tools-only@example.com", scopes=["tools:read", "tools:execute"])
    async with connect(gw.mcp, key=key) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert "essentials__calculator_evaluate" in names
        assert not {"LOAD_SKILL", "READ_SKILL_FILE", "LIST_SKILLS"} & set(names)
        assert (await _list(client))["skills"] == []
        assert await _error_code(_get(client, "skill://hello-world/SKILL.md")) == -32602
        assert await _error_code(client.read_resource("skill://hello-world/SKILL.md")) == -32602
        uris = [r.uri for r in (await client.list_resources()).resources]
        assert not any(u.startswith("skill://") for u in uris)
        refused = await client.call_tool("LOAD_SKILL", {"name": "hello-world"})
        assert refused.is_error is True and "skills:read" in refused.content[0].text  # type: ignore[union-attr]


# --- (d): loads are counted -----------------------------------------------------------------
async def test_loads_are_counted_reads_are_not(gw: Gateway) -> None:
    async with connect(gw.mcp, key=gw.bob) as client:
        for _ in range(2):
            assert not (await client.call_tool("LOAD_SKILL", {"name": "hello-world"})).is_error
        await _get(client, "skill://hello-world/SKILL.md")
        await _list(client)
        await client.read_resource("skill://hello-world/SKILL.md")
        await client.call_tool("READ_SKILL_FILE", {"name": "hello-world", "path": "SKILL.md"})
        await client.call_tool("LOAD_SKILL", {"name": "nope"})
    stats = httpx.get(
        f"{gw.server.url}/api/v1/skills/hello-world/stats", headers=_auth(gw.bob)
    ).json()
    assert stats["loads"] == 3 and stats["last_loaded_at"] is not None
    other = httpx.get(
        f"{gw.server.url}/api/v1/skills/pdf-processing/stats", headers=_auth(BOOT)
    ).json()
    assert other["loads"] == 0


# --- (f): bad input -------------------------------------------------------------------------
@ERAS
async def test_bad_input_is_a_clear_error_never_a_crash(gw: Gateway, mode: str, era: str) -> None:
    async with connect(gw.mcp, mode=mode) as client:
        for name, args, says in [
            ("LOAD_SKILL", {}, "needs 'name'"),
            ("LOAD_SKILL", {"name": 5}, "needs 'name'"),
            ("LOAD_SKILL", {"name": "nope"}, "no skill named 'nope'"),
            ("READ_SKILL_FILE", {"name": "pdf-processing"}, "needs 'path'"),
            ("READ_SKILL_FILE", {"name": "pdf-processing", "path": "../hello-world/SKILL.md"}, "outside the skill"),
            ("READ_SKILL_FILE", {"name": "pdf-processing", "path": "/etc/passwd"}, "outside the skill"),
            ("READ_SKILL_FILE", {"name": "pdf-processing", "path": "scripts/../SKILL.md"}, "outside the skill"),
            ("READ_SKILL_FILE", {"name": "pdf-processing", "path": "nope.md"}, "has no file 'nope.md'"),
            ("READ_SKILL_FILE", {"name": "nope", "path": "SKILL.md"}, "no skill named 'nope'"),
            ("LIST_SKILLS", {"limit": 0}, "'limit'"),
        ]:  # fmt: skip
            result = await client.call_tool(name, args)
            assert result.is_error is True, (name, args)
            assert says in result.content[0].text, (name, args, result.content)  # type: ignore[union-attr]

        for uri in [
            "skill://nope/SKILL.md",
            "skill://pdf-processing/references/FORMS.md",  # a file, not a skill
            "skill://pdf-processing/../hello-world/SKILL.md",
            "https://example.com/pdf-processing/SKILL.md",
        ]:
            assert await _error_code(_get(client, uri)) == -32602, uri
        missing_uri = RawRequest(method="skills/get", params=AnyParams())
        assert await _error_code(client.session.send_request(missing_uri, RAW)) == -32602
        assert await _error_code(_list(client, cursor="not-a-cursor")) == -32602
        for uri in [
            "skill://pdf-processing/nope.md",
            "skill://pdf-processing/%2E%2E/hello-world/SKILL.md",
            "skill://pdf-processing/references",  # a directory
            "skill://pdf-processing",
            "skill://",
        ]:
            assert await _error_code(client.read_resource(uri)) == -32602, uri
        for uri in ["skill://pdf-processing/SKILL.md", "skill://nope", "skill://pdf-processing/x"]:
            assert await _error_code(_directory(client, uri)) == -32602, uri
    assert '"level": "error"' not in gw.server.output()


# --- changes reach connected agents; the catalog is served from memory --------------------
async def test_changes_show_up_without_reconnecting(gw: Gateway) -> None:
    text = (
        skill_md("versioned", body="Use it.\n")
        .decode()
        .replace("---\n\n", "metadata:\n  version: 1.0\n  released: 2026-01-02\n---\n\n", 1)
    )
    async with connect(gw.mcp, key=gw.bob) as client:
        before = (await client.list_tools()).tools[0].description or ""
        assert "versioned" not in before
        _upload(gw.server, BOOT, text.encode(), "SKILL.md", visibility="public")
        after = (await client.list_tools()).tools[0].description or ""
        assert "- versioned: A test skill." in after
        entry = (await _get(client, "skill://versioned/SKILL.md"))["skill"]
        # verbatim: what a YAML parser reads from the file (the number stays a number)
        assert entry["frontmatter"]["metadata"] == {"version": 1.0, "released": "2026-01-02"}
        r = httpx.delete(f"{gw.server.url}/api/v1/skills/versioned", headers=_auth(BOOT))
        assert r.status_code == 204
        assert "versioned" not in ((await client.list_tools()).tools[0].description or "")
        assert await _error_code(_get(client, "skill://versioned/SKILL.md")) == -32602


async def test_catalog_is_read_once_per_change(harness: AppHarness) -> None:
    """In process: tools/list, skills/list and resources/list are served from memory."""
    h = harness
    front = h.app.state.mcp_front  # type: ignore[attr-defined]
    skills = next(s for s in front.surfaces if isinstance(s, SkillsMcp))
    service = skills.service
    reads = 0
    original = service.catalog

    async def counting() -> Any:
        nonlocal reads
        reads += 1
        return await original()

    service.catalog = counting
    principal = await h.app.state.gw.authenticator.authenticate(BOOTSTRAP_KEY)  # type: ignore[attr-defined]

    async def upload(folder: str, **params: str) -> None:
        data = zip_folder(VALID_DIR / folder)
        r = await h.client.post(
            "/api/v1/skills/upload",
            files={"file": ("x.skill", data)},
            params=params,
            headers=h.auth(),
        )
        assert r.status_code == 201, r.text

    await upload("hello-world")
    for _ in range(50):
        tools = await skills.tools(principal)
        await skills.resources(principal)
        await skills.list_skills(principal, None, True)
    assert reads == 1
    assert "hello-world" in (tools[0].description or "")
    await upload("csv-insights", visibility="public")
    tools = await skills.tools(principal)
    assert reads == 2 and "csv-insights" in (tools[0].description or "")
    r = await h.client.patch(
        "/api/v1/skills/csv-insights", json={"visibility": "private"}, headers=h.auth()
    )
    assert r.status_code == 200
    await skills.tools(principal)
    assert reads == 3
