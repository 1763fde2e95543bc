from pathlib import Path

import pytest

from gateway.config import ConfigError, load_settings, normalize_database_url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("MCPGW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings()
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.is_sqlite
    assert s.resolved_database_url.endswith(".mcpgw/mcpgw.db")
    assert s.should_auto_migrate
    assert s.bootstrap_api_key is None


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPGW_PORT", "9001")
    monkeypatch.setenv("MCPGW_DATABASE_URL", "postgresql://u@db:5432/gw")
    s = load_settings()
    assert s.port == 9001
    assert s.resolved_database_url == "postgresql+psycopg://u@db:5432/gw"
    assert not s.is_sqlite
    assert not s.should_auto_migrate  # production databases migrate explicitly


def test_yaml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "mcpgw.yaml").write_text("port: 7000\nlog_level: DEBUG\n")
    assert load_settings().port == 7000
    monkeypatch.setenv("MCPGW_PORT", "7001")
    s = load_settings()
    assert (s.port, s.log_level) == (7001, "DEBUG")


def test_explicit_config_file_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPGW_CONFIG_FILE", "/nonexistent/gw.yaml")
    with pytest.raises(ConfigError, match="MCPGW_CONFIG_FILE"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("MCPGW_PORT", "not-a-port", "MCPGW_PORT"),
        ("MCPGW_PORT", "70000", "MCPGW_PORT"),
        ("MCPGW_LOG_LEVEL", "LOUD", "MCPGW_LOG_LEVEL"),
        ("MCPGW_DATABASE_URL", "mysql://x/y", "MCPGW_DATABASE_URL"),
        ("MCPGW_BOOTSTRAP_API_KEY", "short", "MCPGW_BOOTSTRAP_API_KEY"),
        ("MCPGW_BOOTSTRAP_ADMIN_EMAIL", "nobody", "MCPGW_BOOTSTRAP_ADMIN_EMAIL"),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert fragment in str(info.value)


def test_secret_values_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPGW_BOOTSTRAP_API_KEY", "tiny")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "tiny" not in str(info.value)


def test_unknown_yaml_key_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "mcpgw.yaml").write_text("prot: 7000\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings()


def test_database_url_normalisation(tmp_path: Path) -> None:
    assert normalize_database_url("sqlite:////x/y.db", tmp_path) == "sqlite+aiosqlite:////x/y.db"
    assert normalize_database_url("postgres://h/db", tmp_path) == "postgresql+psycopg://h/db"
    assert normalize_database_url(None, tmp_path).startswith("sqlite+aiosqlite:///")


def test_loopback_detection() -> None:
    assert load_settings(host="127.0.0.1").binds_loopback
    assert load_settings(host="::1").binds_loopback
    assert not load_settings(host="0.0.0.0").binds_loopback  # noqa: S104
