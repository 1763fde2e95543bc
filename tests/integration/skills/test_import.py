"""POST /api/v1/skills/import against a real git server on loopback (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.db import Database
from tests.conftest import AppHarness, make_settings, running_app
from tests.support import GitHttpServer, git_http_server  # noqa: F401  (fixture)
from tests.support import skill_md as text_skill_md

API = "/api/v1/skills"


@pytest.fixture
async def gw(
    database: Database,
    db_url: str,
    tmp_path: Path,
    git_http_server: GitHttpServer,  # noqa: F811
) -> AsyncIterator[AppHarness]:
    settings = make_settings(
        db_url,
        tmp_path,
        skills_github_base=git_http_server.base_url,
        allow_private_urls=True,
    )
    async with running_app(settings) as found:
        yield found


async def _import(h: AppHarness, **body: object) -> httpx.Response:
    return await h.client.post(f"{API}/import", json=body, headers=h.auth(), timeout=120)


async def test_import_creates_then_versions_only_changes(
    gw: AppHarness,
    git_http_server: GitHttpServer,  # noqa: F811
) -> None:
    first = git_http_server.publish(
        "acme/skills",
        {
            "skills/pdf-tools/SKILL.md": text_skill_md("pdf-tools", "Work with PDFs."),
            "skills/pdf-tools/scripts/run.sh": "#!/bin/sh\necho pdf\n",
            "skills/notes/SKILL.md": text_skill_md("notes", "Take notes."),
        },
    )
    r = await _import(gw, source="acme/skills")
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["commit"] == first and result["kind"] == "git"
    assert result["url"].startswith(f"{git_http_server.base_url}/acme/skills")
    assert sorted((s["name"], s["status"], s["version"]) for s in result["skills"]) == [
        ("notes", "created", 1),
        ("pdf-tools", "created", 1),
    ]
    skill = (await gw.client.get(f"{API}/pdf-tools", headers=gw.auth())).json()
    assert skill["source"]["kind"] == "git" and skill["source"]["commit"] == first
    assert skill["source"]["subpath"] == "skills/pdf-tools"
    assert sorted(f["path"] for f in skill["files"]) == ["SKILL.md", "scripts/run.sh"]

    r = await _import(gw, source="acme/skills")
    assert sorted(s["status"] for s in r.json()["skills"]) == ["unchanged", "unchanged"]

    second = git_http_server.publish(
        "acme/skills",
        {"skills/notes/SKILL.md": text_skill_md("notes", "Take better notes.")},
    )
    r = await _import(gw, source="acme/skills", skill="notes")
    assert r.status_code == 200, r.text
    assert [(s["name"], s["status"], s["version"]) for s in r.json()["skills"]] == [
        ("notes", "updated", 2)
    ]
    notes = (await gw.client.get(f"{API}/notes", headers=gw.auth())).json()
    assert notes["description"] == "Take better notes."
    assert [v["source"]["commit"] for v in notes["versions"]] == [second, first]
    # pinning the old commit brings the old content back as a new version
    r = await _import(gw, source="acme/skills", skill="notes", ref=first)
    assert r.json()["skills"][0]["status"] == "updated"
    assert r.json()["skills"][0]["version"] == 3


async def test_import_reports_invalid_skills_and_source_errors(
    gw: AppHarness,
    git_http_server: GitHttpServer,  # noqa: F811
) -> None:
    git_http_server.publish(
        "acme/mixed",
        {
            "skills/good-one/SKILL.md": text_skill_md("good-one"),
            "skills/bad-one/SKILL.md": "---\nname: bad-one\ndescription: x\nversion: 2\n---\nbody\n",
        },
    )
    r = await _import(gw, source="acme/mixed")
    assert r.status_code == 200, r.text
    by_name = {s["name"]: s for s in r.json()["skills"]}
    assert by_name["good-one"]["status"] == "created"
    assert by_name["bad-one"]["status"] == "invalid"
    assert by_name["bad-one"]["errors"][0] == {
        "field": "version",
        "line": 4,
        "message": by_name["bad-one"]["errors"][0]["message"],
    }
    # lenient keeps the unknown field with a warning
    r = await _import(gw, source="acme/mixed", skill="bad-one", strict=False)
    assert r.json()["skills"][0]["status"] == "created"
    assert r.json()["skills"][0]["warnings"][0]["field"] == "version"
    # a skill at the repository's root: its name stands in for the folder name
    git_http_server.publish("acme/single", {"SKILL.md": text_skill_md("single")})
    r = await _import(gw, source="acme/single")
    assert r.status_code == 200 and r.json()["skills"][0]["status"] == "created", r.text
    assert (await gw.client.get(f"{API}/single", headers=gw.auth())).json()["source"][
        "subpath"
    ] == ""
    # one skill asked for and invalid: the import itself is a 422
    git_http_server.publish(
        "acme/single", {"SKILL.md": "---\nname: single\ndescription: x\nhomepage: y\n---\n"}
    )
    r = await _import(gw, source="acme/single")
    assert r.status_code == 422 and r.json()["code"] == "invalid_skill"
    assert r.json()["errors"][0]["field"] == "homepage"
    # source errors come from skills.sources with their own codes
    r = await _import(gw, source="acme/does-not-exist")
    assert r.status_code == 404 and r.json()["code"] == "source_not_found"
    r = await _import(gw, source="acme/mixed", skill="nope")
    assert r.status_code == 404 and r.json()["code"] == "skill_not_found"
