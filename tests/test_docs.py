"""The docs against the code: their commands run, their configurations load.

- `sh loopback` blocks run against a real `tallyd serve` on a free port, and what
  they show after `#` is what they print (docs/deploy.md, "Tested docs");
- every `tallyd` command line in an `sh` block parses with tallyd's own parser;
- `nginx` blocks for conf.d load in a real nginx, which then proxies to tallyd;
- systemd units pass `systemd-analyze verify` and start tallyd on loopback;
- the configuration reference is the one `Config` makes, the API reference the one
  the route table makes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tallyd import apidoc, configdoc
from tallyd.app import OPENAPI
from tallyd.cli import parser
from tallyd.config import FIELDS
from tests.conftest import REPO, free_port, require, udp_port
from tests.test_readme import fenced

pytestmark = pytest.mark.timeout(60)

CONFIGURATION = REPO / "docs" / "configuration.md"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent  # this checkout's virtualenv: its tallyd, as in the docs
DOC_PORT = "8080"


def blocks(info: str) -> list[tuple[Path, str]]:
    """(file, body) of every block of every doc whose info string is `info`."""
    return [(doc, body) for doc in DOCS for i, body in fenced(doc.read_text()) if i == info]


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TALLYD_")}
    return {**clean, "PATH": f"{BIN}{os.pathsep}{clean.get('PATH', '')}"}


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tallyd exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"tallyd did not answer:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()


# -- sh loopback blocks ---------------------------------------------------------


def commands(body: str) -> list[tuple[str, list[str]]]:
    """(command, the `# ` lines right after it) of a block; `\\` continues a line,
    and a blank line ends what a command shows."""
    out: list[tuple[str, list[str]]] = []
    pending = ""
    shown: list[str] | None = None
    for line in body.splitlines():
        if pending:
            pending += "\n" + line
        elif line.startswith("#"):
            if shown is not None:
                shown.append(line[2:])
            continue
        elif not line.strip():
            shown = None
            continue
        else:
            pending = line
        if pending.endswith("\\"):
            continue
        shown = []
        out.append((pending, shown))
        pending = ""
    return out


def serve_args(command: str) -> list[str] | None:
    """The flags of a `tallyd serve` line, or None for another command."""
    words = shlex.split(command, comments=True)
    if len(words) >= 2 and words[0].endswith("tallyd") and words[1] == "serve":
        return words[2:]
    return None


def matches(printed: str, shown: list[str]) -> bool:
    """Whether a command printed what the doc shows: the same text, or for a JSON
    object every key shown with the value shown."""
    want = "\n".join(shown)
    try:
        wanted = json.loads(want)
        got = json.loads(printed)
    except ValueError:
        return printed.rstrip("\n") == want
    if isinstance(wanted, dict) and isinstance(got, dict):
        return all(k in got and got[k] == v for k, v in wanted.items())
    return bool(got == wanted)


class Loopback:
    """One tallyd for one doc's `sh loopback` blocks, in a directory of its own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        (tmp / ".venv").mkdir()
        (tmp / ".venv" / "bin").symlink_to(BIN)
        self.port = str(free_port())
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "tallyd.log"

    def serve(self, args: list[str]) -> None:
        assert self.proc is None, "one tallyd serve per doc"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tallyd",
                    "serve",
                    "--http",
                    f"127.0.0.1:{self.port}",
                    *args,
                ],
                cwd=self.tmp,
                env=env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_healthy(f"http://127.0.0.1:{self.port}", self.proc, self.log)

    def run(self, body: str) -> list[str]:
        """Run a block; what went wrong, one line per command."""
        body = body.replace(DOC_PORT, self.port)
        problems = []
        for command, shown in commands(body):
            args = serve_args(command)
            if args is not None:
                self.serve(args)
                continue
            if self.proc is None:
                self.serve([])
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=self.tmp,
                env=env(),
                capture_output=True,
                text=True,
                timeout=30,
            )
            if done.returncode != 0:
                problems.append(f"{command!r} exited {done.returncode}: {done.stderr}")
            elif shown and not matches(done.stdout, shown):
                problems.append(f"{command!r} printed {done.stdout!r}, the doc shows {shown}")
        return problems

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc, self.log)


LOOPBACK = sorted({doc for doc, _ in blocks("sh loopback")})


@pytest.mark.parametrize("doc", LOOPBACK, ids=lambda p: p.name)
def test_the_loopback_commands_print_what_the_doc_shows(doc: Path, tmp_path: Path) -> None:
    require("curl")
    here = Loopback(tmp_path)
    try:
        problems = [p for d, body in blocks("sh loopback") if d == doc for p in here.run(body)]
    finally:
        here.close()
    assert not problems, "\n".join(problems)


def test_some_docs_have_loopback_blocks() -> None:
    assert {"README.md", "deploy.md"} <= {doc.name for doc in LOOPBACK}


# -- every tallyd command line parses --------------------------------------------


def tallyd_lines() -> list[tuple[str, list[str]]]:
    """(doc name, words) of every `tallyd …` line of every sh block."""
    found = []
    for doc in DOCS:
        for info, body in fenced(doc.read_text()):
            if info.split()[:1] != ["sh"]:
                continue
            for command, _ in commands(body.replace("\\\n", " ")):
                lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                words = list(lexer)
                # Up to the first redirection, pipe or list operator.
                ops = [i for i, w in enumerate(words) if set(w) <= set("();<>|&")]
                words = words[: ops[0]] if ops else words
                if words[:1] == ["sudo"]:
                    words = words[1:]
                if words and words[0].endswith("tallyd") and "[" not in command:
                    found.append((doc.name, words[1:]))
    return found


def test_every_tallyd_command_in_the_docs_parses(capsys: pytest.CaptureFixture[str]) -> None:
    lines = tallyd_lines()
    assert len(lines) >= 15
    bad = []
    for name, words in lines:
        try:
            parser().parse_args(words)
        except SystemExit:
            bad.append(f"{name}: tallyd {shlex.join(words)}: {capsys.readouterr().err}")
    assert not bad, "\n".join(bad)


# -- nginx ------------------------------------------------------------------------

NGINX_CONF_D = "# /etc/nginx/conf.d/"


def certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *(require("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def nginx_conf(body: str, prefix: Path, ports: dict[str, int], tls: tuple[Path, Path]) -> str:
    """A block of docs for conf.d, in an http {} of its own on loopback ports."""
    body = re.sub(r"^\s*listen \[::\]:\d+[^;]*;\n", "", body, flags=re.M)
    body = re.sub(r"listen 80\b", f"listen 127.0.0.1:{ports['http']}", body)
    body = re.sub(r"listen 443\b", f"listen 127.0.0.1:{ports['https']}", body)
    body = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {tls[0]};", body)
    body = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {tls[1]};", body)
    assert f"127.0.0.1:{DOC_PORT}" in body
    body = body.replace(f"127.0.0.1:{DOC_PORT}", f"127.0.0.1:{ports['tallyd']}")
    temp = " ".join(
        f"{kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    temp += f" uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;"
    head = (
        f"events {{ worker_connections 64; }}\nhttp {{\n{temp}\naccess_log {prefix}/access.log;\n"
    )
    return head + body + "}\n"


NGINX = [body for _, body in blocks("nginx") if body.startswith(NGINX_CONF_D)]


@pytest.mark.parametrize("body", NGINX, ids=lambda b: b.splitlines()[0].rsplit("/", 1)[-1])
def test_the_nginx_configuration_loads_and_proxies(body: str, tmp_path: Path) -> None:
    binary = require("nginx")
    ports = {"http": free_port(), "https": free_port(), "tallyd": free_port()}
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(body, prefix, ports, certificate(tmp_path)))
    globals_ = f"pid {prefix}/nginx.pid; error_log {prefix}/error.log;"
    if os.geteuid() == 0:
        globals_ += " user root;"
    cmd = [binary, "-p", str(prefix), "-c", str(conf), "-g", globals_]
    checked = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    log = tmp_path / "tallyd.log"
    upstream = f"127.0.0.1:{ports['tallyd']}"
    with open(log, "ab") as out:
        tallyd = subprocess.Popen(
            # One counted badge view per client, id and minute: shows whom tallyd sees.
            [*(sys.executable, "-m", "tallyd", "serve", "--badge-rate", "1"), "--http", upstream],
            cwd=tmp_path,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    subprocess.run(cmd, check=True)
    try:
        wait_healthy(f"http://127.0.0.1:{ports['tallyd']}", tallyd, log)
        https = f"https://127.0.0.1:{ports['https']}"
        with httpx.Client(verify=False, timeout=10) as client:
            for _ in range(50):
                try:
                    client.get(f"{https}/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            plain = client.get(f"http://127.0.0.1:{ports['http']}/healthz")
            assert plain.status_code == 301
            assert plain.headers["location"].startswith("https://")
            health = client.get(f"{https}/healthz")
            assert health.status_code == 200 and health.json()["status"] == "ok"
            event = {
                "type": "pageview",
                "data": {"account": "acme"},
                "time": "2013-09-05T14:03:07Z",
            }
            posted = client.post(f"{https}/api/events", params={"wait": "flush"}, json=event)
            assert posted.status_code == 202 and posted.json()["stored"] is True
            read = client.get(f"{https}/api/stats/track/acme/pageview/2013")
            assert read.json()["data"]["9"] == 1
            assert client.get(f"{https}/metrics").status_code == 404

            def views(base: str, badge: str) -> int:
                for forged in ("198.51.100.1", "198.51.100.2"):
                    client.get(f"{base}/badge/{badge}.svg", headers={"X-Forwarded-For": forged})
                return int(client.get(f"{base}/api/stats/track/{badge}/hit").json()["total"])

            # Through nginx a client's own X-Forwarded-For is not believed: both views
            # come from the address nginx saw. Straight from loopback it would be.
            assert views(https, "through-nginx") == 1
            assert views(f"http://{upstream}", "from-loopback") == 2
    finally:
        pid = prefix / "nginx.pid"
        if pid.exists():
            os.kill(int(pid.read_text()), signal.SIGQUIT)
        stop(tallyd, log)


# -- systemd ------------------------------------------------------------------------

UNIT_DIR = "# /etc/systemd/system/"
UNITS = [body for _, body in blocks("ini") if body.startswith(UNIT_DIR)]
INSTALLED = "/opt/tallyd/.venv/bin/"
# Without systemd-analyze: the directives systemd 252 knows, of those a service may use
# (systemd.directives(7)); a unit of the docs may use only these.
KNOWN = {
    "Unit": """Description Documentation Wants Requires Requisite BindsTo PartOf Upholds
        Conflicts Before After OnFailure OnSuccess PropagatesReloadTo ReloadPropagatedFrom
        JoinsNamespaceOf RequiresMountsFor StopWhenUnneeded RefuseManualStart
        RefuseManualStop AllowIsolate DefaultDependencies StartLimitIntervalSec
        StartLimitBurst StartLimitAction ConditionPathExists AssertPathExists""",
    "Service": """Type ExitType RemainAfterExit PIDFile BusName ExecStart ExecStartPre
        ExecStartPost ExecCondition ExecReload ExecStop ExecStopPost RestartSec
        TimeoutStartSec TimeoutStopSec TimeoutAbortSec TimeoutSec RuntimeMaxSec
        WatchdogSec Restart SuccessExitStatus RestartPreventExitStatus
        RestartForceExitStatus NotifyAccess KillMode KillSignal SendSIGKILL SendSIGHUP
        FinalKillSignal Environment EnvironmentFile PassEnvironment WorkingDirectory
        User Group DynamicUser SupplementaryGroups UMask LimitNOFILE LimitCORE
        StateDirectory StateDirectoryMode RuntimeDirectory RuntimeDirectoryMode
        RuntimeDirectoryPreserve CacheDirectory LogsDirectory ConfigurationDirectory
        ReadWritePaths ReadOnlyPaths InaccessiblePaths ProtectSystem ProtectHome
        PrivateTmp PrivateDevices PrivateNetwork PrivateUsers NoNewPrivileges
        CapabilityBoundingSet AmbientCapabilities ProtectKernelTunables
        ProtectKernelModules ProtectKernelLogs ProtectControlGroups ProtectClock
        ProtectHostname ProtectProc ProcSubset RestrictAddressFamilies RestrictNamespaces
        RestrictRealtime RestrictSUIDSGID LockPersonality MemoryDenyWriteExecute RemoveIPC
        SystemCallArchitectures SystemCallFilter SystemCallErrorNumber StandardOutput
        StandardError SyslogIdentifier MemoryMax CPUQuota TasksMax""",
    "Install": "WantedBy RequiredBy Alias Also DefaultInstance",
}


def sections(unit: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every directive of a unit file."""
    out, section = [], ""
    for line in unit.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, line
        out.append((section, key.strip(), value.strip()))
    return out


def test_the_units_are_valid(tmp_path: Path) -> None:
    assert {b.splitlines()[0] for b in UNITS} >= {f"{UNIT_DIR}tallyd.service"}
    files = []
    for body in UNITS:
        assert INSTALLED in body
        path = tmp_path / body.splitlines()[0].rsplit("/", 1)[-1]
        path.write_text(body.replace(INSTALLED, f"{BIN}/"))
        files.append(str(path))
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        # It checks every key, value, section and that ExecStart can be run; quiet is valid.
        done = subprocess.run([analyze, "verify", *files], capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr and not done.stdout, done.stderr
    for body in UNITS:
        for section, key, _ in sections(body):
            assert key in KNOWN.get(section, "").split(), f"[{section}] {key}"


class Unit:
    """A unit's ExecStart with its Environment= and WorkingDirectory=, its paths moved
    into a temporary directory and its ports onto free ones."""

    def __init__(self, body: str, tmp: Path, port: int, syslog: int) -> None:
        text = body.replace(INSTALLED, f"{BIN}/")
        for system, ours in (("/var/lib/", "state"), ("/var/www/", "www"), ("/run/", "run")):
            text = text.replace(system, f"{tmp}/{ours}/")
        text = text.replace(f"127.0.0.1:{DOC_PORT}", f"127.0.0.1:{port}")
        text = re.sub(r"udp://127\.0\.0\.1:\d+", f"udp://127.0.0.1:{syslog}", text)
        directives = sections(text)
        self.variables = dict(
            v.split("=", 1) for s, k, v in directives if (s, k) == ("Service", "Environment")
        )
        assert all(name.startswith("TALLYD_") for name in self.variables)
        service = {k: v for s, k, v in directives if s == "Service"}
        # What systemd (or the doc's commands) would have made.
        for name, base in (("StateDirectory", "state"), ("RuntimeDirectory", "run")):
            if name in service:
                (tmp / base / service[name]).mkdir(parents=True, exist_ok=True)
        for path in service.get("ReadWritePaths", "").split():
            Path(path).mkdir(parents=True, exist_ok=True)
        self.command = shlex.split(service["ExecStart"])
        self.cwd = Path(service.get("WorkingDirectory", str(tmp)))
        self.env = {**env(), **self.variables}


def test_the_units_commands_run_on_loopback(tmp_path: Path) -> None:
    """tallyd.service counts badge views; tallyd-badges.service then draws them."""
    port, syslog = free_port(), udp_port()
    units = {b.splitlines()[0].rsplit("/", 1)[-1]: Unit(b, tmp_path, port, syslog) for b in UNITS}
    serve = units.pop("tallyd.service")
    log = tmp_path / "tallyd.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            serve.command, cwd=serve.cwd, env=serve.env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["store"] == "sqlite"
        for _ in range(3):
            assert httpx.get(f"http://127.0.0.1:{port}/badge/owner/name.svg").status_code == 200
    finally:
        stop(proc, log)
    # --durable with the SQLite file in the state directory: the journal is beside it.
    assert (tmp_path / "state" / "tallyd" / "tallyd.db.journal").is_dir()

    badges = units.pop("tallyd-badges.service")
    # Once instead of --every: it draws what the store holds, and exits.
    command = list(badges.command)
    del command[command.index("--every") : command.index("--every") + 2]
    done = subprocess.run(command, cwd=badges.cwd, env=badges.env, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    drawn = Path(command[command.index("--out") + 1]) / "owner%2Fname.svg"
    assert 'aria-label="hits: 3"' in drawn.read_text()
    assert not units, f"units not run: {sorted(units)}"


# -- the configuration reference ----------------------------------------------------


def test_the_configuration_reference_is_the_codes() -> None:
    text = CONFIGURATION.read_text()
    assert configdoc.updated(text) == text, (
        "docs/configuration.md does not list the settings of tallyd/config.py: "
        f"run `.venv/bin/{configdoc.COMMAND}` and commit the result"
    )


def test_the_reference_has_a_row_per_setting() -> None:
    table = configdoc.reference()
    rows = table.splitlines()[2:]
    assert len(rows) == len(FIELDS)
    for row, name in zip(rows, FIELDS, strict=True):
        flag, variable, key = (cell.strip() for cell in row.split(" | ")[:3])
        assert flag.startswith(f"| `--{name.replace('_', '-')}`")
        assert (variable, key) == (f"`TALLYD_{name.upper()}`", f"`{name}`")


# -- the API reference --------------------------------------------------------------


def test_the_api_reference_is_the_codes() -> None:
    text = (REPO / "docs" / "api.md").read_text()
    assert apidoc.updated(text) == text, (
        "docs/api.md does not describe the routes of tallyd/routes.py: "
        f"run `.venv/bin/{apidoc.COMMAND}` and commit the result"
    )


def test_the_api_reference_has_a_section_per_route() -> None:
    document = json.loads(OPENAPI)
    headings = set(re.findall(r"^### `([A-Z]+) (\S+)`$", apidoc.reference(), re.M))
    routes = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in apidoc.METHODS
    }
    assert headings == routes
    assert ("POST", "/api/events") in routes
    assert ("PUT", "/api/admin/{account}/{event}/baseline") in routes
