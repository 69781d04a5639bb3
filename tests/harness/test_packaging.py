"""The wheel ships the guest definitions and the claims suites, so installed commands work without a clone.

The installed-wheel tests build the wheel, install it into a fresh venv (no pip in it, no
download: its dependencies come from this venv's site-packages through a .pth line, which
does not run this venv's own .pth files, so the editable pytest_minix of the checkout is not
importable there) and run the suites from a directory outside the checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from pytest_minix.paths import SUITES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (found,) = out.glob("pytest_minix-*.whl")
    return found


def test_wheel_contains_vm_suites_and_entry_points(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pytest_minix/vm/reference.toml" in names
    assert "pytest_minix/vm/reference/init" in names
    assert {"pytest_minix/vm/minix.toml", "pytest_minix/vm/minix/releases.toml"} <= names
    # The claims suites, as the checkout's tests/<suite>: every test module, and no bytecode.
    assert "pytest_minix/suites/__init__.py" in names
    for suite in SUITES:
        shipped = {n.split("/")[-1] for n in names if n.startswith(f"pytest_minix/suites/{suite}/")}
        assert shipped == {p.name for p in (ROOT / "tests" / suite).glob("*.py")}, suite
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "[pytest11]" in text and "minix = pytest_minix.plugin.hooks" in text
    assert "pytest-minix = pytest_minix.cli:main" in text


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A fresh venv with the wheel installed: (its python, its site-packages)."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    (site / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return python, site


def run_installed(python: Path, cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    return subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_installed_package_is_the_wheels_copy(installed: tuple[Path, Path], tmp_path: Path) -> None:
    python, site = installed
    res = run_installed(
        python,
        tmp_path,
        "-c",
        "import pytest_minix, pytest_minix.paths as p; print(pytest_minix.__file__, p.suites_root())",
    )
    assert res.returncode == 0, res.stderr
    module, suites = res.stdout.split()
    assert Path(module) == site / "pytest_minix" / "__init__.py"  # not the checkout's editable install
    assert Path(suites) == site / "pytest_minix" / "suites"


def test_installed_suites_collect_with_validate_and_pyargs(installed: tuple[Path, Path], tmp_path: Path) -> None:
    python, site = installed
    args = ("--minix-guest=reference", "--arch=i386", "--collect-only", "-q", "-p", "no:randomly")
    via_cli = run_installed(python, tmp_path, "-m", "pytest_minix.cli", "validate", *args)
    assert via_cli.returncode == 0, via_cli.stdout + via_cli.stderr
    assert f"the claims suites in {site / 'pytest_minix' / 'suites'}" in via_cli.stderr
    collected = {line.split("::")[0].rsplit("/", 1)[-1] for line in via_cli.stdout.splitlines() if "::" in line}
    assert collected == {p.name for s in SUITES for p in (ROOT / "tests" / s).glob("test_*.py")}
    assert str(ROOT) not in via_cli.stdout + via_cli.stderr  # nothing from the checkout

    via_pyargs = run_installed(python, tmp_path, "-m", "pytest", "--pyargs", "pytest_minix.suites", *args)
    assert via_pyargs.returncode == 0, via_pyargs.stdout + via_pyargs.stderr
    count = re.compile(r"(\d+) tests? collected")
    m1, m2 = count.search(via_cli.stdout), count.search(via_pyargs.stdout)
    assert m1 and m2 and m1.group(1) == m2.group(1), (via_cli.stdout[-300:], via_pyargs.stdout[-300:])
    assert not (site / "pytest_minix" / "suites" / ".pytest_cache").exists()


@pytest.mark.qemu
def test_installed_suites_pass_on_the_reference_guest(installed: tuple[Path, Path], tmp_path: Path) -> None:
    """One real test from the installed suites, run by pytest-minix validate, against the reference guest."""
    python, site = installed
    res = run_installed(
        python,
        tmp_path,
        "-m",
        "pytest_minix.cli",
        "validate",
        "--minix-guest=reference",
        "--arch=i386",
        "--minix-accel=tcg",
        "-p",
        "no:randomly",
        "-p",
        "no:xdist",
        "-k",
        "test_fork_exec_pipe_and_file_io",
        "-v",
        timeout=600,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert f"the claims suites in {site / 'pytest_minix' / 'suites'}" in res.stderr
    assert re.search(r"test_process_basics\.py::test_fork_exec_pipe_and_file_io\[i386\] PASSED", out), out[-3000:]
    assert re.search(r"\b1 passed\b", out), out[-3000:]
