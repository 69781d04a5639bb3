"""The wheel ships the report's JSON Schema beside the module that writes the report."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from pytest_minix.verdicts.report import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_the_report_schema(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("pytest_minix-*.whl")
    with zipfile.ZipFile(wheel) as z:
        schema = json.loads(z.read("pytest_minix/verdicts/report.schema.json"))
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
