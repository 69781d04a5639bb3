"""The example CI workflows: their validate steps run under bash with a stand-in ``pytest-minix``.

Checked: the exit status each step gives for each of validate's (10, the harness broke, is
never swallowed), that benchmarks are compared only when a saved run exists, that serial
logs are uploaded, and that the benchmark cache is saved under a new key by every run.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLAIMS = EXAMPLES / "github-actions-claims.yml"
MATRIX = EXAMPLES / "github-actions-matrix.yml"


def validate_step(workflow: Path, **expressions: str) -> str:
    """The ``run: |`` block that calls ``pytest-minix validate``, with ``${{ ... }}`` filled in."""
    lines = workflow.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("pytest-minix validate "))
    start = max(i for i in range(at) if lines[i].strip() == "run: |") + 1
    indent = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for line in lines[start:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    script = "\n".join(block)
    for name, value in expressions.items():
        script = script.replace("${{ " + name + " }}", value)
    assert "${{" not in script, script
    return script


def run_step(script: str, tmp_path: Path, status: int) -> tuple[int, str, str]:
    """Run the step as GitHub does (bash -eo pipefail); the stand-in exits ``status``. Status, args, stdout."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "pytest-minix"
    fake.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args"\nexit {status}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, (tmp_path / "args").read_text(), proc.stdout


@pytest.mark.parametrize("status", [0, 1, 10, 11, 4])
def test_claims_job_fails_with_validates_status(tmp_path: Path, status: int) -> None:
    code, args, out = run_step(validate_step(CLAIMS), tmp_path, status)
    assert code == status
    assert args.startswith("validate ") and "-p no:xdist" in args and "--minix-log-dir=vm-logs" in args
    if status == 10:
        assert "::error::the harness broke" in out


def test_claims_job_compares_only_with_a_saved_run(tmp_path: Path) -> None:
    script = validate_step(CLAIMS)
    _, args, _ = run_step(script, tmp_path, 0)
    assert "--benchmark-autosave" in args and "--benchmark-compare" not in args  # first run: nothing to compare
    saved = tmp_path / ".minix-benchmarks" / "Linux-CPython-3.11-64bit" / "0001_x.json"
    saved.parent.mkdir(parents=True)
    saved.write_text("{}")
    _, args, _ = run_step(script, tmp_path, 0)
    assert "--benchmark-compare --benchmark-compare-fail=median:25%" in args


@pytest.mark.parametrize(
    ("required", "status", "expected"),
    [
        ("true", 0, 0),
        ("true", 1, 0),  # refuted: gated by the merge job, on every shard's report
        ("true", 10, 10),
        ("false", 10, 10),  # a broken harness fails the shard even where the guest is optional
        ("true", 11, 11),
        ("false", 11, 0),
        ("true", 4, 4),
    ],
)
def test_matrix_shard_never_swallows_a_broken_harness(
    tmp_path: Path, required: str, status: int, expected: int
) -> None:
    script = validate_step(MATRIX, **{"matrix.arch": "i386", "matrix.guest_required": required})
    code, args, _ = run_step(script, tmp_path, status)
    assert code == expected
    assert args.startswith("validate --arch=i386") and "--minix-log-dir=vm-logs" in args


@pytest.mark.parametrize("workflow", [CLAIMS, MATRIX], ids=lambda p: p.name)
def test_workflows_upload_serial_logs_and_swallow_nothing(workflow: Path) -> None:
    text = workflow.read_text()
    assert "continue-on-error" not in text
    assert re.search(r"path: vm-logs/", text) and "serial-logs" in text
    if yaml := _yaml():
        yaml.safe_load(text)  # well-formed (a step name with ': ' must be quoted)


def test_benchmark_history_is_saved_anew_by_every_run() -> None:
    text = CLAIMS.read_text()
    key = re.search(r"path: \.minix-benchmarks\n\s+key: (.+)\n\s+restore-keys: (.+)\n", text)
    assert key, "a cache step for .minix-benchmarks with key and restore-keys"
    assert "github.run_id" in key.group(1) and key.group(1).startswith(key.group(2).strip())
    assert "--benchmark-storage=file://.minix-benchmarks" in text


def _yaml():  # type: ignore[no-untyped-def]
    try:
        import yaml
    except ImportError:
        return None
    return yaml
