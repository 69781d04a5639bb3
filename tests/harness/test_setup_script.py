"""scripts/setup on a stand-in machine: apt-get only for what is missing, pip only when the project changed.

The script runs for real, in a copy of the checkout's files it reads, with stand-ins first
on PATH (dpkg-query, sudo, apt-get, python3) and a stand-in venv (.venv/bin/python,
.venv/bin/pytest-minix) that log each call: no apt, no pip, no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Logs its arguments; `-m pip install` "installs" (marks the venv) unless FAKE_PIP_FAIL is set.
VENV_PYTHON = """#!/bin/sh
echo "python $*" >> "$FAKE_LOG"
case "$1 $2 $3" in
  "-m pip --version") [ -e "$(dirname "$0")/../no-pip" ] && exit 1; exit 0 ;;
  "-m pip install") [ -n "$FAKE_PIP_FAIL" ] && exit 1; touch "$(dirname "$0")/../installed"; exit 0 ;;
  "-m ensurepip --upgrade") rm -f "$(dirname "$0")/../no-pip"; exit 0 ;;
esac
exit 0
"""
# --version works once "installed"; build-reference is logged.
VENV_CLI = """#!/bin/sh
echo "pytest-minix $*" >> "$FAKE_LOG"
[ "$1" = "--version" ] && { [ -e "$(dirname "$0")/../installed" ] || exit 1; }
exit 0
"""
# The system python3: the version check passes; `-m venv DIR` makes a stand-in venv.
SYSTEM_PYTHON = """#!/bin/sh
echo "python3 $*" >> "$FAKE_LOG"
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin" && cp "$FAKE_BIN/venv-python" "$3/bin/python" && cp "$FAKE_BIN/venv-cli" "$3/bin/pytest-minix"
fi
exit 0
"""
DPKG_QUERY = """#!/bin/sh
for pkg; do :; done  # the last argument
for missing in $FAKE_MISSING; do [ "$pkg" = "$missing" ] && exit 1; done
printf 'install ok installed'
"""
LOGGER = """#!/bin/sh
echo "{name} $*" >> "$FAKE_LOG"
[ "{name}" = sudo ] && exec "$@"
exit 0
"""


@pytest.fixture
def machine(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A checkout copy (pyproject.toml, scripts/setup) and the environment with the stand-ins."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup", checkout / "scripts" / "setup")
    shutil.copy2(ROOT / "pyproject.toml", checkout / "pyproject.toml")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    scripts = {
        "venv-python": VENV_PYTHON,
        "venv-cli": VENV_CLI,
        "python3": SYSTEM_PYTHON,
        "dpkg-query": DPKG_QUERY,
        "apt-get": LOGGER.format(name="apt-get"),
        "sudo": LOGGER.format(name="sudo"),
        "id": "#!/bin/sh\necho 1000\n",  # not root: apt-get goes through sudo
    }
    for name, text in scripts.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    env = {
        "PATH": f"{bindir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_BIN": str(bindir),
        "FAKE_MISSING": "",
    }
    return checkout, env


def setup(checkout: Path, env: dict[str, str], **extra: str) -> list[str]:
    """Run scripts/setup; the calls it made, one per line."""
    log = Path(env["FAKE_LOG"])
    log.write_text("")
    proc = subprocess.run(
        ["bash", str(checkout / "scripts" / "setup")],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines()


def pip_installs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("python -m pip install")]


def test_second_run_installs_nothing_with_pip(machine: tuple[Path, dict[str, str]]) -> None:
    checkout, env = machine
    first = setup(checkout, env)
    assert "python3 -m venv .venv" in first
    assert pip_installs(first) == ["python -m pip install -q -e .[dev]"]
    assert first[-1] == "pytest-minix build-reference --arch all"
    assert (checkout / ".venv" / ".pytest-minix-setup").is_file()

    second = setup(checkout, env)  # offline or not: the venv already holds this project state
    assert pip_installs(second) == [] and not any("venv" in c for c in second), second
    assert second[-1] == "pytest-minix build-reference --arch all"

    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# a new dependency\n")
    assert len(pip_installs(setup(checkout, env))) == 1  # the project changed: install again
    assert pip_installs(setup(checkout, env)) == []


def test_a_venv_that_lost_the_package_is_reinstalled(machine: tuple[Path, dict[str, str]]) -> None:
    checkout, env = machine
    setup(checkout, env)
    (checkout / ".venv" / "installed").unlink()  # pip uninstall pytest-minix, say
    assert len(pip_installs(setup(checkout, env))) == 1


def test_offline_pip_failure_keeps_what_is_installed(machine: tuple[Path, dict[str, str]]) -> None:
    checkout, env = machine
    setup(checkout, env)
    (checkout / "pyproject.toml").write_text((checkout / "pyproject.toml").read_text() + "\n# changed\n")
    calls = setup(checkout, env, FAKE_PIP_FAIL="1")  # the project changed, and pip cannot reach an index
    assert len(pip_installs(calls)) == 1 and calls[-1] == "pytest-minix build-reference --arch all"
    assert not (checkout / ".venv" / ".pytest-minix-setup").exists()  # tried again next time


def test_missing_debian_packages_are_installed_with_apt_and_a_pipless_venv_is_repaired(
    machine: tuple[Path, dict[str, str]],
) -> None:
    checkout, env = machine
    (checkout / ".venv" / "bin").mkdir(parents=True)  # made by `python3 -m venv` before python3-venv was there
    shutil.copy2(Path(env["FAKE_BIN"]) / "venv-python", checkout / ".venv" / "bin" / "python")
    shutil.copy2(Path(env["FAKE_BIN"]) / "venv-cli", checkout / ".venv" / "bin" / "pytest-minix")
    (checkout / ".venv" / "no-pip").touch()
    calls = setup(checkout, env, FAKE_MISSING="python3-venv qemu-utils")
    installs = [c for c in calls if c.startswith("apt-get install")]
    assert installs == ["apt-get install -y -q --no-install-recommends python3-venv qemu-utils"], calls
    assert "python -m ensurepip --upgrade" in calls and len(pip_installs(calls)) == 1
    assert not any(c.startswith("apt-get") for c in setup(checkout, env))  # all there now
