from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tallyd.cli import parser
from tallyd.config import FIELDS, TEXT, Config, _opt, check_parsers


def test_defaults() -> None:
    cfg = Config.load({}, env={})
    assert cfg.store == "sqlite:///tallyd.db"
    assert cfg.store_wait == 30.0
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


def serve(*argv: str, env: dict[str, str], toml: Path | None = None) -> Config:
    """The configuration `tallyd serve ARGV` would run with, flags parsed as the CLI does."""
    args = parser().parse_args(["serve", *argv])
    return Config.load(vars(args), env=env, path=str(toml) if toml else None)


REDIS = "redis://127.0.0.1:6390/0"


@pytest.mark.parametrize(
    "argv, env, toml, store",
    [
        # A flag beats any variable, whichever spelling each uses.
        (["--store", "sqlite:///flag.db"], {"TALLYD_REDISHOST": "127.0.0.1:6390"}, "", "flag"),
        (["--redishost", "127.0.0.1:6390"], {"TALLYD_STORE": "sqlite:///env.db"}, "", "redis"),
        # A variable beats the file, whichever spelling each uses.
        ([], {"TALLYD_STORE": "sqlite:///env.db"}, 'redishost = "127.0.0.1:6390"', "env"),
        ([], {"TALLYD_REDISHOST": "127.0.0.1:6390"}, 'store = "sqlite:///file.db"', "redis"),
        ([], {}, 'redishost = "127.0.0.1:6390"', "redis"),
        # Within one source the seed's spelling wins, as it always has.
        (["--store", "sqlite:///flag.db", "--redishost", "127.0.0.1:6390"], {}, "", "redis"),
        ([], {"TALLYD_STORE": "sqlite:///e.db", "TALLYD_REDISHOST": "127.0.0.1:6390"}, "", "redis"),
        # Empty is unset.
        (["--store", "sqlite:///flag.db"], {"TALLYD_REDISHOST": ""}, "", "flag"),
    ],
)
def test_the_most_specific_source_names_the_store(
    tmp_path: Path, argv: list[str], env: dict[str, str], toml: str, store: str
) -> None:
    f = tmp_path / "t.toml"
    f.write_text(toml + "\n")
    want = {
        "flag": "sqlite:///flag.db",
        "env": "sqlite:///env.db",
        "redis": REDIS,
    }[store]
    assert serve(*argv, env=env, toml=f).store == want


def test_seed_aliases_are_flags_like_the_others(tmp_path: Path) -> None:
    env = {"TALLYD_ZMQ": "tcp://127.0.0.1:7001", "TALLYD_ZMQ_TOPIC": "env"}
    cfg = serve("--zmqsocket", "tcp://127.0.0.1:7002", "--topic", "flag", env=env)
    assert (cfg.zmq, cfg.zmq_topic) == (["tcp://127.0.0.1:7002"], ["flag"])
    # Every spelling of one flag adds to the same list.
    cfg = serve("--zmq", "tcp://h:1", "--zmqsocket", "tcp://h:2", "--zmsocket", "h:3", env={})
    assert cfg.zmq == ["tcp://h:1", "tcp://h:2", "h:3"]
    assert serve("--httphost", "0.0.0.0:9000", env={}).http == "0.0.0.0:9000"
    # Without a flag, the variable beats the file.
    f = tmp_path / "t.toml"
    f.write_text('zmq = ["tcp://127.0.0.1:7003"]\nzmq-topic = "file"\n')
    cfg = serve(env=env, toml=f)
    assert (cfg.zmq, cfg.zmq_topic) == (["tcp://127.0.0.1:7001"], ["env"])
    assert serve(env={}, toml=f).zmq == ["tcp://127.0.0.1:7003"]


def test_config_file_from_env(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text('http = "0.0.0.0:9000"\n')
    assert Config.load({}, env={"TALLYD_CONFIG": str(f)}).http_port == 9000


def text_of(value: object) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize("name", [n for n, f in FIELDS.items() if "sets" not in f.metadata])
def test_every_setting_is_read_as_its_type(name: str, tmp_path: Path) -> None:
    default = getattr(Config(), name)
    var = "TALLYD_" + name.upper()
    from_env = getattr(Config.load({}, env={var: text_of(default)}), name)
    assert from_env == default and type(from_env) is type(default)
    f = tmp_path / "t.toml"
    toml = str(default).lower() if type(default) is bool else repr(default).replace("'", '"')
    f.write_text(f"{name} = {toml}\n")
    from_file = getattr(Config.load({}, env={}, path=str(f)), name)
    assert from_file == default and type(from_file) is type(default)


def test_a_switch_is_a_flag_without_a_value_or_a_truth_in_text() -> None:
    assert Config.load({"durable": True}, env={}).durable is True
    assert Config.load({}, env={"TALLYD_DURABLE": "yes"}).durable is True
    assert Config.load({}, env={"TALLYD_DURABLE": "0"}).durable is False
    with pytest.raises(ValueError, match="TALLYD_DURABLE='maybe': expected true or false"):
        Config.load({}, env={"TALLYD_DURABLE": "maybe"})


def test_a_field_must_name_a_parser_of_its_type() -> None:
    check_parsers(Config)

    @dataclass
    class Untold:
        durable: bool = False

    @dataclass
    class Mistyped:
        durable: bool = _opt(False, "write a journal", TEXT)

    with pytest.raises(TypeError, match="durable names no parser"):
        check_parsers(Untold)
    with pytest.raises(TypeError, match="durable is <class 'bool'> but its parser reads"):
        check_parsers(Mistyped)


@pytest.mark.parametrize(
    "flags, env, message",
    [
        ({"http": "nope"}, {}, "HOST:PORT"),
        ({"timezone": "Mars/Base"}, {}, "IANA"),
        ({"flush_interval": 0.0}, {}, "positive"),
        ({"store_wait": "-1"}, {}, "--store-wait must be 0 or more"),
        ({"breakdown": ["order"]}, {}, "EVENT:PROPERTY"),
        ({}, {"TALLYD_MAX_BODY": "lots"}, "TALLYD_MAX_BODY='lots': expected a whole number"),
        ({}, {"TALLYD_FLUSH_INTERVAL": "nan"}, "TALLYD_FLUSH_INTERVAL"),
        ({"redishost": "localhost"}, {}, "--redishost='localhost': expected HOST:PORT"),
        ({}, {"TALLYD_STORE": "sqlite://"}, "no database file named"),
        ({"store": "mongodb://x"}, {}, "unknown scheme; accepted: sqlite:///"),
        ({"store": "redis://:secret@h:x/0"}, {}, "'redis://:\\*\\*\\*@h:x/0'"),
        ({"store": "redis+cluster://"}, {}, "redis\\+cluster://"),
        ({"store": "redis://h:6379/0?x=1"}, {}, "unknown option 'x' \\(options: client_name, db"),
        ({"store": "redis+cluster://h:7000?socket_timeout=5"}, {}, "takes no options"),
        ({"zmq": ["tcp://127.0.0.1"]}, {}, "--zmq 'tcp://127.0.0.1': expected tcp://HOST:PORT"),
        ({"zmq": ["bus:6666x"]}, {}, "--zmq 'bus:6666x'"),
        ({"zmq_bind": ["udp://*:1"]}, {}, "--zmq-bind 'udp://\\*:1': expected tcp://\\*:PORT"),
        ({"syslog": ["udp://127.0.0.1"]}, {}, "--syslog 'udp://127.0.0.1'"),
        ({"syslog": ["udp://127.0.0.1:99999"]}, {}, "--syslog"),
        ({"syslog": ["tcp://127.0.0.1:514"]}, {}, "--syslog"),
        (
            {"syslog": ["udp://127.0.0.1:5140", "udp://localhost:5140"]},
            {},
            "--syslog 'udp://127.0.0.1:5140': that address is given more than once",
        ),
        ({"syslog": ["unix:///run/t.sock", "unix:///run/./t.sock"]}, {}, "more than once"),
        ({"syslog": ["udp://127.0.0.1:5140", "udp://127.1:5140"]}, {}, "more than once"),
    ],
)
def test_bad_settings_name_themselves(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as err:
        Config.load(flags, env=env)
    assert "\n" not in str(err.value)


def test_good_endpoints_pass() -> None:
    cfg = Config.load(
        {
            "zmq": ["localhost:6666", "tcp://[::1]:5555", "ipc:///run/bus.sock"],
            "zmq_bind": ["tcp://*:6666", "tcp://*:*", "inproc://test"],
            "syslog": ["udp://127.0.0.1:5140", "unix:///run/tallyd.sock"],
            "store": "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001",
        },
        env={},
    )
    assert len(cfg.zmq) == 3


def test_redis_py_options_pass() -> None:
    url = "redis://h:6379/0?socket_timeout=5&socket_connect_timeout=2&client_name=tallyd"
    assert Config.load({"store": url}, env={}).store == url


@pytest.mark.parametrize(
    "toml, message",
    [
        ("colour = 'blue'", "colour"),
        ("max_body = 1.5", "max_body=1.5: expected a whole number"),
        ("flush_interval = 'fast'", "flush_interval='fast': expected a number"),
        ("store = 5", "store=5: expected text"),
        ("zmq = [1, 2]", "zmq=\\[1, 2\\]: expected a list of text"),
    ],
)
def test_bad_file_settings(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "t.toml"
    f.write_text(toml + "\n")
    with pytest.raises(ValueError, match=message):
        Config.load({}, env={}, path=str(f))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("workers", "0", "--workers must be 1 or more"),
        ("workers", "100000", "--workers 100000: at most"),
        ("shard", "1/0", "the count must be 1 or more"),
        ("shard", "2/2", "the index must be 0 to 1"),
    ],
)
def test_workers_and_shards_out_of_bounds_are_refused(field: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config(**{field: value}).validate()
