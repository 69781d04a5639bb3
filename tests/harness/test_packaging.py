"""The wheel ships the guest definitions, so installed commands find vm/."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_vm_and_entry_points(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("pytest_minix-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pytest_minix/vm/reference.toml" in names
    assert "pytest_minix/vm/reference/init" in names
    assert {"pytest_minix/vm/minix.toml", "pytest_minix/vm/minix/releases.toml"} <= names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "[pytest11]" in text and "minix = pytest_minix.plugin.hooks" in text
    assert "pytest-minix = pytest_minix.cli:main" in text
