"""The MINIX guest without MINIX: skips with one reason, option errors, the ARM lane's machine check.

No MINIX image can be had on CI machines; these sessions prove what a user without one
sees. The boot plumbing itself (ISO -> kernel + modules -> QEMU multiboot) is proven in
test_minix_boot.py with a stub kernel.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

INNER = """
import pytest

@pytest.mark.parametrize("n", [1, 2, 3])
def test_needs_minix(guest, n):
    assert guest.shell.run("uname -s").stdout.strip() == "Minix"
"""


@pytest.fixture
def session(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTEST_MINIX_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("PYTEST_MINIX_OFFLINE", raising=False)
    monkeypatch.delenv("PYTEST_MINIX_RELEASES", raising=False)
    pytester.makepyfile(test_inner=INNER)
    return pytester


def skipped_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith("SKIPPED")]


@pytest.mark.parametrize("how", ["option", "env"])
def test_no_image_offline_skips_every_minix_test_with_one_reason(
    session: pytest.Pytester, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["-p", "no:cacheprovider", "-rs", "--arch=i386"]  # --minix-guest=minix is the default
    if how == "option":
        args.append("--minix-offline")
    else:
        monkeypatch.setenv("PYTEST_MINIX_OFFLINE", "1")
    result = session.runpytest_subprocess(*args)
    result.assert_outcomes(skipped=3)
    assert result.ret == pytest.ExitCode.OK
    out = result.stdout.str()
    lines = skipped_lines(out)
    assert len(lines) == 1 and lines[0].startswith("SKIPPED [3]"), lines  # one reason, not three
    reason = re.sub(r"\s+", " ", out)
    for part in (
        "minix_R3.4.0rc6-d5e4fc0.iso",
        "pytest-minix fetch 3.4.0rc6",
        "--minix-image PATH",
        "--minix-guest=reference",
        "https://download.minix3.org/iso/snapshot/",
    ):
        assert part in reason
    assert "guest unavailable, its tests were skipped" in out


def test_arm_lane_skips_naming_the_missing_machine(session: pytest.Pytester) -> None:
    result = session.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "--arch=arm", "--minix-offline")
    result.assert_outcomes(skipped=3)
    out = re.sub(r"\s+", " ", result.stdout.str())
    assert len(skipped_lines(result.stdout.str())) == 1
    for part in (
        "needs QEMU machine 'beaglexm'",
        "-machine help",
        "qemu-linaro",
        "--minix-qemu-arm PATH",
        "--minix-arm-image PATH",
        "--minix-guest=reference",
    ):
        assert part in out


def test_arm_lane_with_a_qemu_that_has_the_machine_asks_for_the_sd_image(
    session: pytest.Pytester, tmp_path: Path
) -> None:
    # A stand-in QEMU whose `-machine help` lists beaglexm: the next thing missing is the SD image.
    fake = tmp_path / "qemu-system-arm"
    fake.write_text("#!/bin/sh\necho 'Supported machines are:'\necho 'beaglexm             Beagle board XM'\n")
    fake.chmod(0o755)
    result = session.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "--arch=arm", f"--minix-qemu-arm={fake}")
    result.assert_outcomes(skipped=3)
    out = re.sub(r"\s+", " ", result.stdout.str())
    assert "needs an SD card image" in out and "--minix-arm-image PATH" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--minix-sha256=abc"], "--minix-sha256: 'abc' is not a SHA-256"),
        (["--minix-image=/nonexistent/minix.iso"], "--minix-image /nonexistent/minix.iso: no such file"),
        (["--minix-boot-dir=/nonexistent"], "--minix-boot-dir /nonexistent: no such directory"),
        (["--minix-release=2.0.4"], "Unknown MINIX release '2.0.4'. Known releases: 3.3.0, 3.4.0rc6"),
    ],
)
def test_bad_minix_options_fail_at_start(session: pytest.Pytester, args: list[str], message: str) -> None:
    result = session.runpytest_subprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_disk_image_without_boot_files_fails_at_start(session: pytest.Pytester, tmp_path: Path) -> None:
    disk = tmp_path / "minix.img"
    disk.write_bytes(b"\0" * 510 + b"\x55\xaa" + b"\0" * 512 * 63)
    result = session.runpytest_subprocess("-p", "no:cacheprovider", f"--minix-image={disk}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = re.sub(r"\s+", " ", result.stderr.str())
    assert "is a disk image" in err and "--minix-boot-dir DIR" in err and "--minix-release RELEASE" in err
