from __future__ import annotations

from pathlib import Path

import pytest

from tallyd.config import Config


def test_defaults() -> None:
    cfg = Config.load({}, env={})
    assert cfg.store == "sqlite:///./tallyd.db"
    assert (cfg.http_host, cfg.http_port) == ("127.0.0.1", 8080)
    assert cfg.breakdowns == {"order": "status"}
    assert cfg.flush_interval == 0.2


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text(
        'timezone = "Asia/Tokyo"\nflush-interval = 1.5\nkey_prefix = "file:"\n'
        'breakdown = ["order:state", "signup:plan"]\n'
    )
    env = {"TALLYD_FLUSH_INTERVAL": "0.7", "TALLYD_KEY_PREFIX": "env:"}
    cfg = Config.load({"key_prefix": "flag:"}, env=env, path=str(f))
    assert cfg.timezone == "Asia/Tokyo"
    assert cfg.flush_interval == 0.7
    assert cfg.key_prefix == "flag:"
    assert cfg.breakdowns == {"order": "state", "signup": "plan"}


def test_config_file_from_env(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text('http = "0.0.0.0:9000"\n')
    assert Config.load({}, env={"TALLYD_CONFIG": str(f)}).http_port == 9000


@pytest.mark.parametrize(
    "flags, env, message",
    [
        ({"http": "nope"}, {}, "HOST:PORT"),
        ({"timezone": "Mars/Base"}, {}, "IANA"),
        ({"flush_interval": 0.0}, {}, "positive"),
        ({"breakdown": ["order"]}, {}, "EVENT:PROPERTY"),
        ({}, {"TALLYD_MAX_BODY": "lots"}, "TALLYD_MAX_BODY"),
    ],
)
def test_bad_settings_name_themselves(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Config.load(flags, env=env)


def test_unknown_file_setting(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text("colour = 'blue'\n")
    with pytest.raises(ValueError, match="colour"):
        Config.load({}, env={}, path=str(f))
