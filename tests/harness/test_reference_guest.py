"""The reference guest as built: its users, checked in the booted guest, and its build key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_minix import VM
from pytest_minix.media.reference import _inputs_digest, data_dir


def _need_reference(vm: VM) -> None:
    if vm.profile.name != "reference":
        pytest.skip("checks what the reference guest's build installs: run with --minix-guest=reference")


def test_root_has_a_name(guest: VM) -> None:
    """busybox's getpwuid() resolves uid 0 (it used to miss root's passwd entry: "unknown uid 0")."""
    _need_reference(guest)
    r = guest.shell.run("whoami; id -un")
    assert (r.status, r.stderr) == (0, ""), r
    assert r.stdout.split() == ["root", "root"]
    assert guest.shell.run("id").check().stdout.startswith("uid=0(root) gid=0(root)")


def test_password_kept_in_shadow(guest: VM) -> None:
    """root logs in without a password, which is set in /etc/shadow (readable by root only)."""
    _need_reference(guest)
    r = guest.shell.run("stat -c '%a %u' /etc/shadow; cut -d: -f1,2 /etc/shadow; cut -d: -f1,2 /etc/passwd").check()
    assert r.stdout.splitlines() == ["600 0", "root:", "root:x"]


def test_build_key_covers_the_guest_files(tmp_path: Path) -> None:
    """The cached guest is keyed by every file in vm/reference: an edit there means a rebuild."""
    data = tmp_path / "reference"
    shutil.copytree(data_dir(), data)
    key = _inputs_digest(data)
    assert _inputs_digest(data) == key
    (data / "passwd").write_text((data / "passwd").read_text().replace("root:x:", "root::"))
    assert _inputs_digest(data) != key
    shutil.copytree(data_dir(), data, dirs_exist_ok=True)
    assert _inputs_digest(data) == key
    (data / "disk" / "new.txt").write_text("x\n")
    assert _inputs_digest(data) != key
