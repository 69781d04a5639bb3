"""Hostile strings reach the guest literally and never a host shell.

File names and command arguments holding quotes, ``;``, newlines, ``$(...)``, backticks,
``*`` and a leading ``-`` go through ``shell.put``/``get``/``run``: the guest sees exactly those
bytes, and a ``$(touch ...)`` canary creates its file neither on the host nor in the guest.
That the sockets live in a private 0700 directory and QEMU has no TCP listener is
tested in test_guest.py (``test_state_dir_is_private``); here the argv is checked once more
for a VM of this module's own, with hostile boot arguments.
"""

from __future__ import annotations

import os
import secrets
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minix.guest.vm import VM

TOKEN = secrets.token_hex(4)
HOST_CANARY = Path(f"/tmp/pm-canary-{TOKEN}")
GUEST_CANARY = f"/tmp/pm-gcanary-{TOKEN}"
TOUCH = f"touch {HOST_CANARY} {GUEST_CANARY}"

# File names cannot hold "/": their canary is relative (the host's and guest's current and home directories).
NAME_CANARY = f"pm-ncanary-{TOKEN}"
NAME_TOUCH = f"touch {NAME_CANARY}"


def hostile(touch: str) -> list[str]:
    """Strings a shell would act on: quotes, separators, substitutions, globs, options, newlines."""
    return [
        'quote\'s "double"',
        f"semi;{touch};x",
        f"dollar $({touch})",
        f"back `{touch}`",
        "star *",
        "-leading-dash",
        "--",
        "new\nline",
        "tab\there & pipe | amp > redir < in",
        "back\\slash %s %d",
        "glob [a-z]? {a,b} ~root",
    ]


HOSTILE_NAMES = hostile(NAME_TOUCH)
HOSTILE = hostile(TOUCH)


@pytest.fixture(autouse=True)
def canaries(guest: VM) -> Iterator[None]:
    host = [HOST_CANARY, Path.cwd() / NAME_CANARY, Path.home() / NAME_CANARY, Path("/") / NAME_CANARY]
    for p in host:
        p.unlink(missing_ok=True)
    yield
    assert not any(p.exists() for p in host), "a hostile string ran a command on the host"
    r = guest.shell.run(f"ls -d {GUEST_CANARY} ~/{NAME_CANARY} /{NAME_CANARY} /tmp/*/{NAME_CANARY} 2>/dev/null; true")
    assert r.stdout == "", "a hostile string ran a command in the guest instead of being taken literally"


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_file_names_round_trip_literally(guest: VM, tmp_path: Path, name: str) -> None:
    d = f"/tmp/pm-sec-{TOKEN}"
    guest.shell.run(f"mkdir -p {d}").check()
    data = name.encode() + b"\0\n\xff" + os.urandom(64)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    remote = f"{d}/{name}"
    guest.shell.put(local, remote)
    # The guest holds exactly one file, under exactly that name (find prints it NUL-terminated; od shows bytes).
    r = guest.shell.run(f"cd {d} && find . -mindepth 1 -print0 | od -An -v -tx1").check()
    listed = bytes.fromhex("".join(r.stdout.split()))
    assert listed == b"./" + name.encode() + b"\0"
    assert guest.shell.get(remote, tmp_path / "down.bin") == data
    assert (tmp_path / "down.bin").read_bytes() == data
    guest.shell.run(f"rm -rf {d}").check()


@pytest.fixture
def dash_dir(guest: VM, tmp_path: Path) -> Iterator[Path]:
    """The guest shell's cwd is a fresh directory holding a file named ``-n``; ``local`` is its content."""
    d = f"/tmp/pm-dash-{TOKEN}"
    guest.shell.run(f"mkdir -p {d} && cd {d}").check()
    local = tmp_path / "x"
    local.write_bytes(b"dash\n")
    try:
        yield local
    finally:
        guest.shell.run(f"cd / && rm -rf {d}")


def test_put_relative_name_with_leading_dash(guest: VM, dash_dir: Path) -> None:
    """A relative name that looks like an option is still a file name."""
    guest.shell.put(dash_dir, "-n")
    assert guest.shell.run("cat ./-n").check().stdout == "dash\n"


def test_get_relative_name_with_leading_dash(guest: VM, dash_dir: Path, tmp_path: Path) -> None:
    guest.shell.put(dash_dir, "-n")
    assert guest.shell.get("-n", tmp_path / "y") == b"dash\n"


@pytest.mark.parametrize("arg", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_command_arguments_are_echoed_exactly(guest: VM, arg: str) -> None:
    r = guest.shell.run("printf %s " + shlex.quote(arg)).check()
    assert r.stdout == arg and r.stderr == ""
    # Several at once, each one argument.
    r = guest.shell.run("printf '<%s>' " + " ".join(shlex.quote(a) for a in (arg, arg))).check()
    assert r.stdout == f"<{arg}><{arg}>"


def test_qemu_argv_has_no_tcp_listener(guest: VM) -> None:
    # The 0700 socket directory itself: test_guest.py::test_state_dir_is_private.
    argv = guest.machine.argv
    assert not any("tcp:" in a or "hostfwd" in a or "telnet" in a or "websocket" in a for a in argv), argv
    sockets = [a for a in argv if "path=" in a]
    assert sockets and all(f"path={guest.machine.dir}/" in a for a in sockets), sockets
    assert (guest.machine.dir.stat().st_mode & 0o777) == 0o700


def test_failed_redirection_of_a_special_builtin_returns_a_status(guest: VM) -> None:
    # The shell abandons the whole framed line (status marker included) and shows its prompt:
    # run() must notice the prompt and report the failure, not wait out its timeout.
    start = time.monotonic()
    r = guest.shell.run(f": > /nonexistent-{TOKEN}/x", timeout=30)
    assert r.status == 2 and "nonexistent" in r.stderr and r.stdout == ""
    assert time.monotonic() - start < 10
    assert guest.shell.run("echo next").stdout == "next\n"  # the shell is in sync afterwards
