"""How package servers are isolated: the mode decision, the bwrap command line, the fd handoff."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import InvalidInput
from gateway.handoff import Handoff
from gateway.servers.runtimes import isolation
from gateway.servers.runtimes.base import BackendUnavailable, RuntimeContext, ServerSpec
from gateway.servers.schemas import ServerCreate, ServerUpdate, parse_config


async def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def _ctx(tmp_path: Path, mode: str) -> RuntimeContext:
    return RuntimeContext(
        data_dir=tmp_path / "data",
        connect_timeout=10,
        allow_private_urls=False,
        inherit_env=("SSL_CERT_FILE", "UV_CACHE_DIR"),
        on_list_changed=_noop,
        on_health_changed=_noop,
        isolation=mode,  # type: ignore[arg-type]
    )


def _spec(**config: Any) -> ServerSpec:
    return ServerSpec(
        id="id-1",
        name="pkg",
        type="npx",
        config={"package": "p", **config},
        env={"PLAIN": "p1"},
        secret_env={"TOKEN": "t0ps3cret"},
    )


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "_probe", (None, "bubblewrap is not installed"))
    monkeypatch.setattr(isolation, "_warned", False)


async def test_mode_none_runs_on_the_host_but_never_an_offline_server(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "none")
    assert await isolation.plan(ctx, _spec()) is None
    with pytest.raises(BackendUnavailable, match="offline needs isolation"):
        await isolation.plan(ctx, _spec(offline=True))


@pytest.mark.usefixtures("no_bwrap")
async def test_without_bubblewrap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(BackendUnavailable, match="MCPGW_SERVER_ISOLATION=bwrap"):
        await isolation.plan(_ctx(tmp_path, "bwrap"), _spec())
    with caplog.at_level(logging.WARNING, "gateway.servers"):
        assert await isolation.plan(_ctx(tmp_path, "auto"), _spec()) is None
    assert "host processes" in caplog.text  # auto says so
    with pytest.raises(BackendUnavailable, match="offline"):
        await isolation.plan(_ctx(tmp_path, "auto"), _spec(offline=True))


@pytest.mark.usefixtures("no_bwrap")
async def test_an_opted_out_server_is_not_isolated(tmp_path: Path) -> None:
    assert await isolation.plan(_ctx(tmp_path, "bwrap"), _spec(isolation="none")) is None


async def test_the_sandbox_command_line(tmp_path: Path) -> None:
    if (await isolation.find_bubblewrap())[0] is None:
        pytest.fail("bubblewrap is needed: apt-get install -y bubblewrap")
    ctx = _ctx(tmp_path, "bwrap")
    sandbox = await isolation.plan(ctx, _spec())
    assert sandbox is not None
    assert sandbox.home == tmp_path / "data" / "servers" / "id-1" / "home"
    assert (sandbox.etc / "passwd").read_text().startswith("root:x:0:0:")
    # a runner folder that holds the data dir: the data dir is masked inside
    sandbox.add_tool(tmp_path)
    argv = sandbox.argv(["npx", "-y", "p"])
    assert argv[argv.index("--tmpfs", argv.index(str(tmp_path))) + 1] == str(ctx.data_dir)
    for flag in ("--unshare-all", "--share-net", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL" and argv[argv.index("--uid") + 1] == "1000"
    assert argv[argv.index("--args") + 1] == "3"
    assert argv[-4:] == ["--", "npx", "-y", "p"]
    assert "t0ps3cret" not in argv and "--setenv" not in argv  # env goes through fd 3
    env = sandbox.environment(ctx, {"TOKEN": "t0ps3cret"})
    assert env["HOME"] == "/home/mcp" and env["TOKEN"] == "t0ps3cret"
    assert env["UV_CACHE_DIR"] == "/home/mcp/.cache/uv"  # never the host's cache
    assert sandbox.env_args(env).startswith(b"--clearenv\0")
    offline = await isolation.plan(ctx, _spec(offline=True))
    assert offline is not None and "--share-net" not in offline.argv(["x"])
    assert "--share-net" in offline.argv(["x"], network=True)  # its fetch step


def test_a_home_folder_is_never_exposed(tmp_path: Path) -> None:
    sandbox = isolation.Sandbox(
        bwrap=isolation.Bubblewrap("/usr/bin/bwrap", True),
        data_dir=tmp_path,
        home=tmp_path / "h",
        etc=tmp_path / "e",
        offline=False,
    )
    for path in ("/", str(Path.home()), str(Path.home().parent)):
        sandbox.add_tool(path)
    sandbox.add_tool("/usr/bin/node")  # already visible
    assert sandbox.tools == []


def test_handoff_gives_the_child_fd_3_and_nothing_on_its_argv() -> None:
    data = b"NAME=value with spaces\nOTHER=x\n"
    with Handoff(data) as handoff:
        argv = handoff.wrap(["sh", "-c", "cat <&3"])
        out = subprocess.run(argv, capture_output=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout == data
    assert not any("value with spaces" in arg for arg in argv)


@pytest.mark.parametrize("name", ["LD_PRELOAD", "NODE_OPTIONS", "dyld_insert_libraries"])
def test_schemas_refuse_loader_variables(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ServerCreate(name="x", type="npx", config={"package": "p"}, secrets={name: "v"})
    assert caught.value.code == "env_not_allowed"
    with pytest.raises(InvalidInput):
        ServerUpdate(env={name: "v"})
    ServerUpdate(secrets={"TOKEN": None})  # removing a secret stays possible


def test_offline_needs_isolation() -> None:
    with pytest.raises(InvalidInput, match="offline"):
        parse_config("uvx", {"package": "p", "offline": True, "isolation": "none"})


def test_a_data_dir_under_a_system_dir_is_masked(tmp_path: Path) -> None:
    """/usr is bound read-only into every sandbox: a data dir below it is covered by a
    tmpfs, as it is when a runner folder holds it."""
    data = os.path.realpath("/usr/local/var/mcpgw")
    sandbox = isolation.Sandbox(
        bwrap=isolation.Bubblewrap("/usr/bin/bwrap", True),
        data_dir=Path(data),
        home=tmp_path / "h",
        etc=tmp_path / "e",
        offline=False,
    )
    argv = sandbox.argv(["x"])
    masks = [i for i, arg in enumerate(argv) if arg == "--tmpfs" and argv[i + 1] == data]
    assert len(masks) == 1
    assert masks[0] > argv.index("/usr")  # after (on top of) the system bind
