"""Unit tests of the pure parts: profiles, timeline, cksum/od helpers, state-dir sweeping."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_minix.errors import ConfigError
from pytest_minix.guest.shell import parse_od, posix_cksum
from pytest_minix.guest.timeline import Timeline
from pytest_minix.profiles import Marker, load_profile, parse_profile
from pytest_minix.qemu import statedir
from pytest_minix.qemu.console import Line


def test_reference_profile_loads() -> None:
    p = load_profile("reference")
    assert set(p.arches) == {"i386", "arm"}
    assert p.arch("arm").machine == "virt" and p.arch("arm").cpu == "cortex-a15"
    assert p.arch("i386").machine == "pc"
    assert p.login.prompt.search("reference login: ")


def test_unknown_guest_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"Unknown guest 'nope'.*Valid guests: .*reference"):
        load_profile("nope")


def test_unknown_arch_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"no arch 'mips'.*arm, i386"):
        load_profile("reference").arch("mips")


def test_malformed_profile_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "bad"\n[login]\nuser = "root"\nshell_prompt = "# "\n[arch.i386]\nqemu = "q"\nmachine = "pc"\n'
    )
    with pytest.raises(ConfigError, match=r"bad.toml: missing key 'login.prompt'"):
        parse_profile(bad)
    bad.write_text('name = "bad"\n[login\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_profile(bad)
    bad.write_text('name="b"\n[login]\nprompt="("\nuser="r"\nshell_prompt="#"\n[arch.i386]\nqemu="q"\nmachine="pc"\n')
    with pytest.raises(ConfigError, match=r"login\.prompt is not a valid regex"):
        parse_profile(bad)
    good = 'name="b"\n[login]\nprompt="x"\nuser="r"\nshell_prompt="#"\n[arch.i386]\nqemu="q"\nmachine="pc"\n'
    bad.write_text(good + 'devices = "VGA"\n')  # a string, not a list: would become ["V", "G", "A"]
    with pytest.raises(ConfigError, match=r'arch\.i386\.devices must be a list .*devices = \["VGA"\]'):
        parse_profile(bad)
    bad.write_text('boot_stall_timeout = "soon"\n' + good)
    with pytest.raises(ConfigError, match=r"boot_stall_timeout must be a positive number of seconds"):
        parse_profile(bad)
    bad.write_text("boot_stall_timeout = 30\n" + good + 'devices = ["VGA"]\n')
    p = parse_profile(bad)
    assert (p.boot_stall_timeout, p.arch("i386").devices) == (30.0, ("VGA",))
    # A string where a list of regexes belongs would be split into one-letter patterns.
    bad.write_text('panic_patterns = "oops"\n' + good)
    with pytest.raises(ConfigError, match=r"panic_patterns must be a list of string regexes"):
        parse_profile(bad)
    bad.write_text(good.replace('shell_prompt="#"\n', 'shell_prompt="#"\nended="init: getty"\n'))
    with pytest.raises(ConfigError, match=r"login\.ended must be a list of string regexes"):
        parse_profile(bad)
    bad.write_text(good.replace('shell_prompt="#"\n', 'shell_prompt="#"\nended=["init: getty", "("]\n'))
    with pytest.raises(ConfigError, match=r"login\.ended\[1\] is not a valid regex"):
        parse_profile(bad)
    bad.write_text(good.replace('shell_prompt="#"\n', 'shell_prompt="#"\nended=["init: getty"]\n'))
    assert [e.pattern for e in parse_profile(bad).login.ended] == ["init: getty"]


def test_timeline_first_match_per_marker_in_time_order() -> None:
    lines = [Line(0.3, "Linux version 6.1"), Line(1.0, "ready"), Line(2.0, "Linux version again"), Line(2.5, "x")]
    markers = [Marker("ready", re.compile("ready")), Marker("kernel", re.compile("Linux version"))]
    tl = Timeline.from_lines(lines, markers)
    assert [(m.name, m.t) for m in tl.milestones] == [("kernel", 0.3), ("ready", 1.0)]
    assert [(p.name, round(p.duration, 3)) for p in tl.phases()] == [("kernel->ready", 0.7)]
    assert "missing" not in tl


@given(st.binary(max_size=2048))
def test_posix_cksum_matches_coreutils(data: bytes) -> None:
    out = subprocess.run(["cksum"], input=data, capture_output=True, check=True).stdout.split()
    assert posix_cksum(data) == int(out[0]) and len(data) == int(out[1])


@given(st.binary(max_size=600))
def test_parse_od_round_trips_real_od(data: bytes) -> None:
    out = subprocess.run(["od", "-An", "-v", "-tx1"], input=data, capture_output=True, check=True).stdout
    assert parse_od(out.decode()) == data


def test_sweep_removes_dirs_of_dead_sessions_only(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{dead.pid}-x"
    stale.mkdir()
    (stale / statedir.OWNER).write_text(str(dead.pid))
    (stale / "qmp.sock").write_text("")
    live = tmp_path / f"{os.getpid()}-y"
    live.mkdir()
    (live / statedir.OWNER).write_text(str(os.getpid()))
    assert statedir.sweep(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


def test_runtime_root_rejects_a_shared_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    root = statedir.runtime_root()
    assert (root.stat().st_mode & 0o777) == 0o700
    root.chmod(0o777)
    with pytest.raises(PermissionError, match="not a private directory"):
        statedir.runtime_root()


def test_key_under_wrong_table_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name="b"\n[login]\nprompt="x"\nuser="r"\nshell_prompt="#"\n[shell]\nsetup="stty -echo"\n'
        'panic_patterns=["oops"]\n[arch.i386]\nqemu="q"\nmachine="pc"\n'
    )
    with pytest.raises(ConfigError, match=r"unknown key\(s\) shell\.panic_patterns"):
        parse_profile(bad)


def test_reference_profile_has_failure_and_noise_patterns() -> None:
    p = load_profile("reference")
    assert any(pat.search("Kernel panic - not syncing: VFS") for pat in p.panic_patterns)
    assert any(pat.search("[    3.819401] message") for pat in p.noise_patterns)
