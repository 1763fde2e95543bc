"""The skills REST API on a live app, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from gateway.servers.essentials import ESSENTIALS_CONFIG
from skills.archive import Limits, build_archive, read_directory
from skills.models import SkillBlob, SkillFile, SkillVersion
from tests.conftest import AppHarness
from tests.support_skills import FIXTURES, VALID, skill_md, skill_zip, tree, zip_folder

API = "/api/v1/skills"


def _package(folder: Path) -> bytes:
    package = read_directory(folder, Limits())
    return build_archive(folder.name, package.files, package.executable)


async def _upload(
    h: AppHarness, data: bytes, name: str = "x.skill", key: str | None = None, **params: Any
) -> httpx.Response:
    return await h.client.post(
        f"{API}/upload",
        files={"file": (name, data)},
        params=params,
        headers=h.auth(key) if key else h.auth(),
    )


async def _count(h: AppHarness, model: Any) -> int:
    async with h.app.state.gw.db.session() as session:  # type: ignore[attr-defined]
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _user_key(h: AppHarness, email: str, role: str = "developer") -> tuple[str, str]:
    r = await h.client.post("/api/v1/users", json={"email": email, "role": role}, headers=h.auth())
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = await h.client.post(
        "/api/v1/keys", json={"name": "t", "user_id": user_id}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    return user_id, r.json()["key"]


def _unzip(data: bytes, into: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(into)
        for info in archive.infolist():
            os.chmod(into / info.filename, (info.external_attr >> 16) & 0o777)


async def test_corpus_round_trips_package_upload_download(
    harness: AppHarness, tmp_path: Path
) -> None:
    h = harness
    for folder in VALID:
        expected = tree(folder)
        r = await _upload(h, _package(folder), f"{folder.name}.skill")
        assert r.status_code == 201, r.text
        stored = r.json()
        assert stored["name"] == folder.name and stored["version"] == 1
        assert {f["path"]: (f["sha256"], f["executable"]) for f in stored["files"]} == expected
        assert {f["path"]: f["size"] for f in stored["files"]} == {
            p.relative_to(folder).as_posix(): p.stat().st_size
            for p in folder.rglob("*")
            if p.is_file()
        }
        text = (folder / "SKILL.md").read_text()
        assert stored["frontmatter_raw"] == text.split("---\n")[1]
        assert stored["body"] == text.split("---\n", 2)[2]
        assert stored["source"] == {"kind": "upload", "filename": f"{folder.name}.skill"}

        r = await h.client.get(f"{API}/{folder.name}/download", headers=h.auth())
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
        assert f'filename="{folder.name}.skill"' in r.headers["content-disposition"]
        _unzip(r.content, tmp_path / "dl")
        assert tree(tmp_path / "dl" / folder.name) == expected
        assert r.content == _package(folder)  # deterministic packages: same bytes

        for path, (digest, _) in expected.items():
            r = await h.client.get(f"{API}/{folder.name}/files/{path}", headers=h.auth())
            assert r.status_code == 200, path
            assert hashlib.sha256(r.content).hexdigest() == digest
            assert r.headers["x-content-type-options"] == "nosniff"
    r = await h.client.get(f"{API}/brand-guidelines/files/assets/logo.png", headers=h.auth())
    assert r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")
    r = await h.client.get(f"{API}/pdf-processing/files/scripts/extract_text.py", headers=h.auth())
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    listing = (await h.client.get(API, headers=h.auth())).json()
    assert [s["name"] for s in listing["items"]] == sorted(f.name for f in VALID)
    assert (await h.client.get(API, params={"q": "pdf"}, headers=h.auth())).json()["total"] == 1


async def test_detail_has_parsed_frontmatter(harness: AppHarness) -> None:
    r = await _upload(harness, zip_folder(FIXTURES / "valid" / "pdf-processing"), "p.zip")
    assert r.status_code == 201, r.text
    skill = r.json()
    assert skill["frontmatter"]["metadata"] == {"author": "example-org", "version": "1.2"}
    assert skill["license"] == "Apache-2.0"
    assert skill["compatibility"] == "Requires Python 3.10+ with pypdf installed"
    assert skill["allowed_tools"] == ["Bash(python3:*)", "Read", "Write"]
    assert skill["visibility"] == "private" and skill["warnings"] == []
    assert [v["version"] for v in skill["versions"]] == [1]
    again = (await harness.client.get(f"{API}/pdf-processing", headers=harness.auth())).json()
    assert again == skill


async def test_invalid_upload_is_422_with_every_problem(harness: AppHarness) -> None:
    h = harness
    r = await _upload(h, zip_folder(FIXTURES / "invalid" / "name-mismatch"))
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_skill"
    assert "name (line 2)" in body["message"]
    assert body["errors"] == [
        {
            "field": "name",
            "line": 2,
            "message": "name 'some-other-name' must equal the skill's folder name 'name-mismatch'",
        }
    ]
    bad = b"---\nname: Bad_Name\ndescription: ''\nextra: 1\n---\n"
    body = (await _upload(h, bad, "SKILL.md")).json()
    assert {(e["field"], e["line"]) for e in body["errors"]} >= {
        ("name", 2),
        ("description", 3),
        ("extra", 4),
    }
    r = await _upload(h, skill_md("nul-body", body="a\x00b"), "SKILL.md")
    assert r.status_code == 422 and r.json()["errors"][0]["line"] == 6
    r = await _upload(h, skill_zip("long-path", {"a" * 1100: b"x"}))
    assert r.status_code == 422 and r.json()["code"] == "unsafe_archive"
    for model in (SkillVersion, SkillFile, SkillBlob):
        assert await _count(h, model) == 0


async def test_strict_and_lenient_uploads(harness: AppHarness) -> None:
    data = zip_folder(FIXTURES / "invalid" / "unknown-field")
    r = await _upload(harness, data)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "version"
    r = await _upload(harness, data, strict="false")
    assert r.status_code == 201, r.text
    skill = r.json()
    assert skill["frontmatter"]["version"] == "1.0.0"
    assert [(w["field"], w["line"]) for w in skill["warnings"]] == [("version", 4)]


async def test_bare_skill_md_and_validate_endpoint(harness: AppHarness) -> None:
    h = harness
    r = await h.client.post(
        f"{API}/validate", files={"file": ("x.zip", skill_zip("ok-skill"))}, headers=h.auth()
    )
    assert r.json() == {"valid": True, "name": "ok-skill", "errors": [], "warnings": []}
    r = await h.client.post(
        f"{API}/validate",
        files={"file": ("SKILL.md", b"---\nname: x\n---\n")},
        headers=h.auth(),
    )
    assert r.status_code == 200 and r.json()["valid"] is False
    assert r.json()["errors"] == [
        {"field": "description", "line": 1, "message": "missing required field 'description'"}
    ]
    assert await _count(h, SkillVersion) == 0
    r = await _upload(h, skill_md("solo-skill"), "SKILL.md")
    assert r.status_code == 201
    assert [f["path"] for f in r.json()["files"]] == ["SKILL.md"]


async def test_versions_unchanged_and_rollback(harness: AppHarness) -> None:
    h = harness
    v1 = skill_zip("versioned", {"references/a.md": b"first", "assets/big.bin": b"\1" * 5000})
    assert (await _upload(h, v1)).status_code == 201
    r = await _upload(h, v1)
    assert r.status_code == 200 and r.json()["version"] == 1  # same content: no new version
    v2 = skill_zip("versioned", {"references/a.md": b"second", "assets/big.bin": b"\1" * 5000})
    r = await _upload(h, v2)
    assert r.status_code == 201 and r.json()["version"] == 2
    versions = (await h.client.get(f"{API}/versioned/versions", headers=h.auth())).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["digest"] != versions[1]["digest"]
    assert [v["file_count"] for v in versions] == [3, 3]
    r = await h.client.get(f"{API}/versioned/files/references/a.md?version=1", headers=h.auth())
    assert r.content == b"first"
    old = (await h.client.get(f"{API}/versioned?version=1", headers=h.auth())).json()
    assert old["shown_version"] == 1 and old["version"] == 2
    # unchanged files are stored once: SKILL.md, big.bin, and the two a.md contents
    assert await _count(h, SkillBlob) == 4

    r = await h.client.post(f"{API}/versioned/rollback", json={"version": 1}, headers=h.auth())
    assert r.status_code == 200, r.text
    rolled = r.json()
    assert rolled["version"] == 3 and rolled["versions"][0]["summary"] == "rolled back to version 1"
    assert rolled["versions"][0]["digest"] == versions[1]["digest"]
    r = await h.client.get(f"{API}/versioned/files/references/a.md", headers=h.auth())
    assert r.content == b"first"
    assert await _count(h, SkillBlob) == 4
    r = await h.client.post(f"{API}/versioned/rollback", json={"version": 9}, headers=h.auth())
    assert r.status_code == 404 and r.json()["code"] == "version_not_found"
    r = await h.client.get(f"{API}/versioned/files/nope.md", headers=h.auth())
    assert r.status_code == 404 and r.json()["code"] == "file_not_found"


async def test_delete_collects_unshared_contents(harness: AppHarness) -> None:
    h = harness
    shared = {"assets/shared.txt": b"same in both"}
    assert (await _upload(h, skill_zip("one", {**shared, "a": b"only one"}))).status_code == 201
    assert (await _upload(h, skill_zip("two", shared))).status_code == 201
    assert await _count(h, SkillBlob) == 4  # two SKILL.md, shared, "only one"
    r = await h.client.delete(f"{API}/one", headers=h.auth())
    assert r.status_code == 204
    assert await _count(h, SkillBlob) == 2
    assert (await h.client.get(f"{API}/one", headers=h.auth())).status_code == 404
    r = await h.client.get(f"{API}/two/files/assets/shared.txt", headers=h.auth())
    assert r.content == b"same in both"
    assert (await h.client.delete(f"{API}/two", headers=h.auth())).status_code == 204
    for model in (SkillVersion, SkillFile, SkillBlob):
        assert await _count(h, model) == 0


async def test_visibility_and_permissions(harness: AppHarness) -> None:
    h = harness
    ada_id, ada = await _user_key(h, "ada@example.com")
    bob_id, bob = await _user_key(h, "bob@example.com")
    _, viewer = await _user_key(h, "val@example.com", "viewer")
    r = await _upload(h, skill_zip("ada-notes"), key=ada)
    assert r.status_code == 201 and r.json()["visibility"] == "private"
    assert r.json()["owner_id"] == ada_id
    # private: invisible to others, and its name is taken
    assert (await h.client.get(f"{API}/ada-notes", headers=h.auth(bob))).status_code == 404
    assert (await h.client.get(API, headers=h.auth(bob))).json()["total"] == 0
    r = await _upload(h, skill_zip("ada-notes", {"x": b"bob's"}), key=bob)
    assert r.status_code == 409 and r.json()["code"] == "name_taken"
    assert (await h.client.get(f"{API}/ada-notes", headers=h.auth())).status_code == 200  # admin
    # viewers read but never write
    r = await _upload(h, skill_zip("viewer-skill"), key=viewer)
    assert r.status_code == 403 and "skills:write" in r.json()["message"]
    # team: members see and may change it
    team = (await h.client.post("/api/v1/teams", json={"name": "docs"}, headers=h.auth())).json()
    for user in (ada_id, bob_id):
        r = await h.client.post(
            f"/api/v1/teams/{team['id']}/members", json={"user_id": user}, headers=h.auth()
        )
        assert r.status_code == 200, r.text
    r = await h.client.patch(f"{API}/ada-notes", json={"visibility": "team"}, headers=h.auth(ada))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "team_id"
    r = await h.client.patch(
        f"{API}/ada-notes",
        json={"visibility": "team", "team_id": team["id"]},
        headers=h.auth(ada),
    )
    assert r.status_code == 200 and r.json()["version"] == 1
    assert (await h.client.get(f"{API}/ada-notes", headers=h.auth(bob))).status_code == 200
    r = await _upload(h, skill_zip("ada-notes", {"x": b"bob's"}), key=bob)
    assert r.status_code == 201 and r.json()["version"] == 2
    assert (await h.client.get(f"{API}/ada-notes", headers=h.auth(viewer))).status_code == 404
    # public: everyone reads; only owner, team or admin change it
    r = await h.client.patch(f"{API}/ada-notes", json={"visibility": "public"}, headers=h.auth(ada))
    assert r.status_code == 200
    assert (await h.client.get(f"{API}/ada-notes", headers=h.auth(viewer))).status_code == 200
    _, carol = await _user_key(h, "carol@example.com")
    r = await h.client.delete(f"{API}/ada-notes", headers=h.auth(carol))
    assert r.status_code == 403
    r = await _upload(h, skill_zip("ada-notes", {"x": b"carol's"}), key=carol)
    assert r.status_code == 403
    r = await _upload(h, skill_zip("team-skill"), key=carol, team_id=team["id"])
    assert r.status_code == 403 and "teams you belong to" in r.json()["message"]
    assert (await h.client.get(API, headers=h.auth(carol))).json()["total"] == 1


async def test_links_report_tools_missing_from_catalogs(harness: AppHarness) -> None:
    h = harness
    r = await h.client.post(
        "/api/v1/servers",
        json={"name": "essentials", "type": "bundle", "config": ESSENTIALS_CONFIG},
        params={"wait": True},
        headers=h.auth(),
        timeout=120,
    )
    assert r.status_code == 201 and r.json()["tool_count"] > 0, r.text
    folder = FIXTURES / "valid" / "incident-runbook"
    assert (await _upload(h, zip_folder(folder))).status_code == 201
    r = await h.client.put(
        f"{API}/incident-runbook/links", json={"servers": ["essentials"]}, headers=h.auth()
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"servers": ["essentials"], "missing_tools": []}

    text = (folder / "SKILL.md").read_text()
    text = text.replace("essentials__git_log Read", "essentials__git_log essentials__git_blam Read")
    text += "\nFinally call `essentials__pager_notify` to page the owner.\n"
    changed = {**{p: (folder / p).read_bytes() for p in tree(folder)}, "SKILL.md": text.encode()}
    r = await _upload(h, skill_zip_from(changed))
    assert r.status_code == 201, r.text
    warnings = [(w["field"], w["line"]) for w in r.json()["warnings"]]
    assert warnings == [("allowed-tools", 6), ("body", len(text.splitlines()))]
    r = await h.client.get(f"{API}/incident-runbook/links", headers=h.auth())
    missing = r.json()["missing_tools"]
    assert [(m["server"], m["tool"], m["field"]) for m in missing] == [
        ("essentials", "git_blam", "allowed-tools"),
        ("essentials", "pager_notify", "body"),
    ]
    assert "not in the catalog of linked server 'essentials'" in missing[0]["message"]
    r = await h.client.post(
        f"{API}/incident-runbook/links", json={"servers": ["nope"]}, headers=h.auth()
    )
    assert r.status_code == 404 and r.json()["code"] == "server_not_found"
    r = await h.client.delete("/api/v1/servers/essentials", headers=h.auth())
    assert r.status_code == 204
    r = await h.client.get(f"{API}/incident-runbook", headers=h.auth())
    assert r.json()["linked_servers"] == []


def skill_zip_from(files: dict[str, bytes], name: str = "incident-runbook") -> bytes:
    return build_archive(name, files, set())


async def test_stats_count_loads_and_downloads_in_batches(harness: AppHarness) -> None:
    h = harness
    assert (await _upload(h, skill_zip("counted"))).status_code == 201
    service = h.app.state.gw.skills  # type: ignore[attr-defined]
    for _ in range(3):
        service.record_load("counted")
    await h.client.get(f"{API}/counted/download", headers=h.auth())
    stats = (await h.client.get(f"{API}/counted/stats", headers=h.auth())).json()
    assert (stats["loads"], stats["downloads"], stats["versions"]) == (3, 1, 1)
    assert stats["last_loaded_at"] is not None
    async with service.db.session() as session:
        row = await service_row(session, "counted")
        assert (row.load_count, row.download_count) == (0, 0)  # nothing written per call
    await service.usage.flush()
    async with service.db.session() as session:
        row = await service_row(session, "counted")
        assert (row.load_count, row.download_count) == (3, 1)
    service.record_load("counted")
    stats = (await h.client.get(f"{API}/counted/stats", headers=h.auth())).json()
    assert (stats["loads"], stats["downloads"]) == (4, 1)
    assert (await h.client.get(f"{API}/nope/stats", headers=h.auth())).status_code == 404


async def service_row(session: Any, name: str) -> Any:
    from skills.repository import SkillRepository

    return await SkillRepository(session).get_by_name(name)
