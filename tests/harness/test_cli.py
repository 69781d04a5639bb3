"""The ``pytest-minix`` command: an interactive console through a pty, and the image commands."""

from __future__ import annotations

import argparse
import bz2
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from minix_layout import build_minix_iso

CLI = [sys.executable, "-m", "pytest_minix.cli"]


class PtySession:
    """A process on a pseudo-terminal, read with a timeout."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.buf = b""

    def expect(self, pattern: bytes, timeout: float) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.buf)
            if m:
                self.buf = self.buf[m.end() :]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen in {timeout} s; output so far:\n{self.buf[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    self.buf += os.read(self.master, 65536)
                except OSError:  # the process is gone and the pty closed
                    time.sleep(0.1)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.mark.slow
@pytest.mark.qemu
def test_console_attaches_the_terminal_and_detaches_with_ctrl_bracket(tmp_path: Path) -> None:
    env = {**os.environ, "TERM": "dumb"}
    s = PtySession(
        [*CLI, "console", "--minix-guest=reference", "--arch=i386", "--minix-accel=tcg", f"--minix-log-dir={tmp_path}"],
        env,
    )
    try:
        m = s.expect(rb"QEMU pid (\d+); serial log (\S+)\. Detach with Ctrl-\]", 30)
        qemu_pid, log = int(m.group(1)), Path(m.group(2).decode())
        s.expect(rb"login: ", 90)  # the boot itself scrolled by on the terminal
        s.send(b"root\r")
        s.expect(rb"# ", 30)
        s.send(b"echo pm-$((6*7))\r")  # typed keys reach the guest, its answer reaches the terminal
        s.expect(rb"pm-42", 30)
        s.send(b"\x1d")  # Ctrl-]
        s.expect(rb"pytest-minix console: detached", 30)
        assert s.proc.wait(timeout=30) == 0
        with pytest.raises(ProcessLookupError):
            for _ in range(50):  # QEMU is stopped with the console, at once
                os.kill(qemu_pid, 0)
                time.sleep(0.1)
        assert b"pm-42" in log.read_bytes()  # and the session is in the serial log
    finally:
        s.close()


@pytest.fixture
def cache(tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A cache and a one-release manifest served from loopback, as environment for the CLI."""
    iso = build_minix_iso(tmp_path / "src.iso")
    url = http_server.add("/minix_R9.9.9.iso.bz2", bz2.compress(iso.read_bytes()))
    manifest = tmp_path / "releases.toml"
    manifest.write_text(f'[releases."9.9.9"]\nfile = "minix_R9.9.9.iso"\nurl = "{url}"\n')
    return {**os.environ, "PYTEST_MINIX_CACHE": str(tmp_path / "cache"), "PYTEST_MINIX_RELEASES": str(manifest)}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_fetch_images_verify_prune(cache: dict[str, str]) -> None:
    offline = run(cache, "fetch", "9.9.9", "--minix-offline")
    assert offline.returncode == 3 and "downloads are off" in offline.stderr
    assert run(cache, "images").stdout.startswith("no MINIX images cached")
    got = run(cache, "fetch", "9.9.9")
    assert got.returncode == 0, got.stderr
    sha = got.stdout.split("sha256 ")[1].split()[0]
    assert "trust on first use" in got.stderr
    listing = run(cache, "images").stdout
    assert re.search(rf"9\.9\.9 +\d+\.\d MiB +sha256 {sha} \(first use\)", listing), listing
    ok = run(cache, "verify", "9.9.9")
    assert ok.returncode == 0 and f"OK iso sha256 {sha}" in ok.stdout
    bad = run(cache, "verify", "9.9.9", "--sha256", "0" * 64)
    assert bad.returncode == 1 and "verify FAILED" in bad.stderr and "0" * 64 in bad.stderr
    image = Path(cache["PYTEST_MINIX_CACHE"]) / "images" / "9.9.9" / "minix_R9.9.9.iso"
    partial = image.with_name("stale.iso.bz2.part")
    partial.write_bytes(b"x")
    pruned = run(cache, "images", "--prune")
    assert f"removed {partial}" in pruned.stdout and image.is_file()
    assert "removed" in run(cache, "images", "--prune", "--all").stdout and not image.exists()


def test_fetch_of_unknown_release_lists_known_ones(cache: dict[str, str]) -> None:
    res = run(cache, "fetch", "1.0")
    assert res.returncode == 2 and "Unknown MINIX release '1.0'" in res.stderr and "9.9.9" in res.stderr


# -- the parser: help, version, exit codes ---------------------------------------------------------
MARKUP = re.compile(r"`|\*\*|:[a-z]+:`|\[[^\]]+\]\(")  # Markdown or reST: backticks, bold, roles, links


def parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    from pytest_minix.cli import build_parser

    main = build_parser()
    sub = next(a for a in main._actions if isinstance(a, argparse._SubParsersAction))
    return [("pytest-minix", main), *((f"pytest-minix {n}", p) for n, p in sub.choices.items())]


def test_every_option_and_command_has_help_without_markup() -> None:
    missing, marked = [], []
    for name, parser in parsers():
        for text in (parser.description, parser.epilog):
            if text and MARKUP.search(text):
                marked.append(f"{name}: {text!r}")
        for action in parser._actions:
            what = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:  # each command's line in the list
                    if not choice.help:
                        missing.append(f"{name} {choice.dest}")
                    elif MARKUP.search(choice.help):
                        marked.append(f"{name} {choice.dest}: {choice.help!r}")
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(what)
            elif MARKUP.search(action.help):
                marked.append(f"{what}: {action.help!r}")
    assert not missing, f"options without help: {missing}"
    assert not marked, "help with markup (argparse prints it as it is):\n" + "\n".join(marked)
    assert {n for n, _ in parsers()} >= {f"pytest-minix {c}" for c in ("validate", "console", "mcp", "fetch")}


def test_version_is_the_package_version() -> None:
    import tomllib
    from importlib.metadata import version

    res = subprocess.run([*CLI, "--version"], capture_output=True, text=True, timeout=60, check=False)
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"pytest-minix {version('pytest-minix')}" == f"pytest-minix {project['version']}"


def readme_exit_codes() -> list[tuple[str, str, str]]:
    """The README's Exit codes table, one row per command: "status meaning; status meaning"."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip().replace("`", "") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells[0] not in ("command", "---"):
            for part in cells[1].split("; "):
                status, meaning = part.split(" ", 1)
                rows.append((cells[0], status, meaning))
    return rows


def test_exit_codes_are_documented_for_every_command_in_the_readme_and_the_help() -> None:
    from pytest_minix.cli import EVERY, EXIT_CODES

    assert readme_exit_codes() == EXIT_CODES, "the README's Exit codes table and cli.EXIT_CODES differ"
    commands = {n.split()[1] for n, _ in parsers() if " " in n}
    assert commands <= {c for c, _, _ in EXIT_CODES}, f"commands without exit codes: {commands - set(EXIT_CODES)}"
    main_help = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    verify_help = subprocess.run([*CLI, "verify", "--help"], capture_output=True, text=True, timeout=60, check=True)
    for cmd, status, meaning in EXIT_CODES:
        assert re.search(rf"{re.escape(cmd)} +{re.escape(status)}  {re.escape(meaning)}\n", main_help), cmd
        if cmd in ("verify", EVERY):
            assert re.search(rf"\n +{re.escape(status)}  {re.escape(meaning)}\n", verify_help.stdout)


# -- console settings from the pytest configuration file --------------------------------------------
CONFIGS = {
    "pytest.ini": "[pytest]\n{body}",
    "pyproject.toml": "[project]\nname = 'x'\n\n[tool.pytest.ini_options]\n{body}",
    "tox.ini": "[tox]\nenvlist = py\n\n[pytest]\n{body}",
    "setup.cfg": "[metadata]\nname = x\n\n[tool:pytest]\n{body}",
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_console_takes_settings_from_the_pytest_config_and_the_command_line_wins(name: str, tmp_path: Path) -> None:
    """No boot: a guest name the ini file gives that does not exist fails at once with the unknown-guest error."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    body = f"minix_guest = nosuchguest\nminix_log_dir = {tmp_path / 'logs'}\n"
    if name == "pyproject.toml":
        body = f"minix_guest = 'nosuchguest'\nminix_log_dir = '{tmp_path / 'logs'}'\n"
    (project / name).write_text(CONFIGS[name].format(body=body))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_ADDOPTS")}

    def console(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "console", *args],
            cwd=project / "sub",  # pytest looks in the parents too
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    res = console()
    assert res.returncode == 2, res.stderr
    assert "Unknown guest 'nosuchguest'" in res.stderr
    assert f"from {project / name}: minix_guest, minix_log_dir" in res.stderr
    res = console("--minix-guest=nosuchcli")
    assert res.returncode == 2 and "Unknown guest 'nosuchcli'" in res.stderr, res.stderr
    assert f"from {project / name}: minix_log_dir" in res.stderr


def test_console_ini_values_are_checked_and_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The console reads the ini file through pytest and checks it by the plugin's own rules."""
    from pytest_minix.cli import build_parser, console_settings
    from pytest_minix.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    ini = tmp_path / "pytest.ini"
    values = {
        "minix_arch": "all",  # the console boots one arch: the first
        "minix_memory": "128",
        "minix_network": "true",
        "minix_offline": "no",
        "minix_image": "~/minix.iso",
    }
    ini.write_text("[pytest]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    args = build_parser().parse_args(["console", "--minix-accel=tcg"])
    config, used, inipath = console_settings(args, tmp_path / "logs")
    assert inipath == ini
    assert sorted(used) == sorted(k for k in values if k != "minix_offline")  # "no" leaves the default: not listed
    assert (config.arches, config.memory, config.network, config.minix.offline, config.accel, config.guest) == (
        ("i386",),
        128,
        True,
        False,
        "tcg",
        "minix",
    )
    assert config.minix.image == Path("~/minix.iso").expanduser().resolve()
    ini.write_text("[pytest]\nminix_arch = i386\nminix_network = false\n")
    args = build_parser().parse_args(["console", "--arch=arm", "--minix-network"])
    config, used, _ = console_settings(args, tmp_path / "logs")
    assert (config.arches, config.network, used) == (("arm",), True, [])  # the command line wins
    for key, bad in (("minix_memory", "lots"), ("minix_arch", "sparc")):
        ini.write_text(f"[pytest]\n{key} = {bad}\n")
        with pytest.raises(ConfigError, match=rf"{key}.*'?{bad}'?"):
            console_settings(build_parser().parse_args(["console"]), tmp_path / "logs")


def test_console_ini_keys_are_the_plugins(tmp_path: Path) -> None:
    """Every console option is one of the plugin's, with its ini twin (pytest --help lists them)."""
    from pytest_minix.cli import build_parser, console_options, ini_key

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    keys = {ini_key(opt) for _dest, opt, _flag in console_options(sub.choices["console"])}
    assert {"minix_guest", "minix_arch", "minix_accel", "minix_network", "minix_offline", "minix_image"} <= keys
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    plugin_ini = set(re.findall(r"^  (minix_\w+) \(", res.stdout, re.M))
    assert keys <= plugin_ini, f"console options without a plugin ini twin: {keys - plugin_ini}"


LAYOUTS = {
    "pytest.ini wins in its directory": {"pytest.ini": "", "tox.ini": "[pytest]\n", "pyproject.toml": ""},
    "pyproject without pytest settings is passed over": {
        "pyproject.toml": "[project]\nname = 'x'\n",
        "tox.ini": "[pytest]\n",
    },
    "setup.cfg needs tool:pytest": {"setup.cfg": "[metadata]\nname = x\n", "up/tox.ini": "[pytest]\n"},
    "the nearest directory wins": {"up/pytest.ini": "[pytest]\n", "pyproject.toml": "[tool.pytest.ini_options]\n"},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_config_file_is_the_one_pytest_uses(layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_minix.cli import project_config

    top = tmp_path / "top"
    for rel, text in LAYOUTS[layout].items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(text)
    cwd = top / "up" / "here"
    cwd.mkdir(parents=True)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r"rootdir: ([^\s,]+),?\s+configfile: (\S+)", res.stdout)
    assert m, res.stdout
    monkeypatch.chdir(cwd)
    assert project_config([]).inipath == Path(m.group(1), m.group(2))


def test_validate_runs_pytest_with_the_config_of_the_current_directory(tmp_path: Path) -> None:
    from pytest_minix.cli import validate_args

    suites = [tmp_path / "s" / "boot", tmp_path / "s" / "memory"]
    ini = tmp_path / "pytest.ini"
    expect = [f"--rootdir={tmp_path}", "-k", "x", *map(str, suites)]
    assert validate_args(["-k", "x"], None, tmp_path, suites) == expect
    assert validate_args(["-q"], ini, tmp_path, suites) == ["-c", str(ini), "-q", *map(str, suites)]
    for own in (["-c", "other.ini"], ["--config-file=other.ini"], ["--rootdir", "r"]):
        assert validate_args(own, ini, tmp_path, suites) == [*own, *map(str, suites)]
