"""Whole pytest sessions in a subprocess: accelerator choice and boot timeouts, for real."""

from __future__ import annotations

import time

import pytest

from pytest_minix.accel import kvm_static_reason
from pytest_minix.profiles import load_profile

ARGS = ("-p", "no:cacheprovider", "--guest=reference")

INNER = """
def test_boot(guest):
    print("ACCEL=" + guest.accel)
    assert guest.shell.run("echo up").stdout == "up\\n"
"""


@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_accel_auto_uses_kvm_or_falls_back_with_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-s", *ARGS, "--arch=i386", "--accel=auto", "-W",
                                           "always::pytest_minix.accel.KvmFallbackWarning")  # fmt: skip
    out = result.stdout.str()
    result.assert_outcomes(passed=1)
    if "ACCEL=kvm" not in out:
        # KVM missing or failing (it fails here: 32-bit guests die with an emulation failure).
        assert "ACCEL=tcg" in out
        assert "falling back to TCG" in out
        static = kvm_static_reason(load_profile("reference").arch("i386"))
        assert (static or "KVM") in out


@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_accel_kvm_fails_with_reason_where_kvm_is_broken(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-s", *ARGS, "--arch=i386", "--accel=kvm")
    out = result.stdout.str()
    if "ACCEL=kvm" in out:
        result.assert_outcomes(passed=1)  # a host where KVM works
        return
    result.assert_outcomes(errors=1)
    assert "--accel=kvm was given but" in out
    assert "--accel=auto" in out and "--accel=tcg" in out


@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_guest_without_prompt_fails_within_boot_timeout(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    start = time.monotonic()
    # The guest needs ~4-5 s to reach login under TCG: a 2 s budget can never be met.
    result = pytester.runpytest_subprocess(*ARGS, "--arch=i386", "--accel=tcg", "--boot-timeout=2")
    elapsed = time.monotonic() - start
    out = result.stdout.str()
    result.assert_outcomes(errors=1)
    assert "BootTimeout" in out
    assert "--boot-timeout=2" in out or "printed nothing on its serial console within 2 s" in out
    assert "Serial log: " in out and ".serial.log" in out
    assert elapsed < 60


def test_unknown_arch_and_guest_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--arch=mips")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--arch='mips' is not supported; use one of i386, arm or all" in result.stderr.str()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--guest=nope")
    assert "Unknown guest 'nope'. Valid guests: " in result.stdout.str() + result.stderr.str()


@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_missing_qemu_names_the_package(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess(*ARGS, "--qemu-i386=/nonexistent/qemu-system-i386")
    out = result.stdout.str()
    result.assert_outcomes(errors=1)
    assert "apt-get install qemu-system-x86 qemu-utils" in out and "--qemu-i386" in out


def test_html_report_carries_serial_log_and_timeline(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html")
    pytest.importorskip("matplotlib")
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess(*ARGS, "--arch=i386", "--accel=tcg", "--html=report.html",
                                           "--self-contained-html")  # fmt: skip
    result.assert_outcomes(passed=1)
    html = (pytester.path / "report.html").read_text()
    assert "serial log (i386)" in html and "boot timeline (i386)" in html
    assert "data:image/png;base64,iVBOR" in html  # the chart itself, embedded
