"""Whole pytest sessions in a subprocess: accelerator choice and boot timeouts, for real."""

from __future__ import annotations

import time

import pytest

from pytest_minix.paths import cache_root
from pytest_minix.profiles import load_profile
from pytest_minix.qemu.accel import KvmMemory, kvm_static_reason

ARGS = ("-p", "no:cacheprovider", "--minix-guest=reference")

INNER = """
def test_boot(guest):
    print("ACCEL=" + guest.accel)
    assert guest.shell.run("echo up").stdout == "up\\n"
"""

COUNT_BOOTS = """
def test_boots(vm_pool):
    print("BOOTS=%d" % len(vm_pool._all))
"""


@pytest.mark.qemu
@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_accel_auto_uses_kvm_or_falls_back_with_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess(
        "-s", *ARGS, "--arch=i386", "--minix-accel=auto", "-W", "always::pytest_minix.qemu.accel.KvmFallbackWarning"
    )
    out = result.stdout.str()
    result.assert_outcomes(passed=1)
    if "ACCEL=kvm" not in out:
        # KVM missing or failing (it fails here: 32-bit guests die with an emulation failure).
        assert "ACCEL=tcg" in out
        assert "falling back to TCG" in out
        static = kvm_static_reason(load_profile("reference").arch("i386"))
        assert (static or "KVM") in out


@pytest.mark.qemu
@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_a_kvm_failure_is_remembered_so_the_next_session_boots_once(pytester: pytest.Pytester) -> None:
    """Under --minix-accel=auto a host whose KVM fails pays the failed KVM boot once, not once per session."""
    record = cache_root() / "kvm-failures.json"
    pytester.makepyfile(test_inner=INNER + COUNT_BOOTS)
    warn = ("-W", "always::pytest_minix.qemu.accel.KvmFallbackWarning")
    # Cold boots: a start from the boot cache would hide whether KVM was tried.
    first = pytester.runpytest_subprocess("-s", *ARGS, "--arch=i386", "--minix-accel=auto", "--minix-cold-boot", *warn)
    first.assert_outcomes(passed=2)
    if "ACCEL=kvm" in first.stdout.str():
        assert "remembered from an earlier session" not in first.stdout.str()  # a host where KVM works keeps no failure
        return
    assert record.is_file() and "|i386" in record.read_text()
    second = pytester.runpytest_subprocess("-s", *ARGS, "--arch=i386", "--minix-accel=auto", "--minix-cold-boot", *warn)
    second.assert_outcomes(passed=2)
    out = second.stdout.str()
    assert "ACCEL=tcg" in out and "remembered from an earlier session" in out and str(record) in out
    assert "BOOTS=1" in out  # one boot under TCG: no attempt under KVM
    # --minix-accel=kvm always tries again (and fails here with its reason), whatever is remembered.
    third = pytester.runpytest_subprocess("-s", *ARGS, "--arch=i386", "--minix-accel=kvm")
    assert "remembered from an earlier session" not in third.stdout.str()
    assert "--minix-accel=kvm was given but" in third.stdout.str() or "ACCEL=kvm" in third.stdout.str()


def test_kvm_memory_is_keyed_by_qemu_binary_and_arch(tmp_path) -> None:
    memory = KvmMemory(tmp_path / "kvm.json")
    memory.remember("/usr/bin/qemu-system-i386", "i386", "KVM internal error")
    assert memory.recall("/usr/bin/qemu-system-i386", "i386") == "KVM internal error"
    assert memory.recall("/usr/bin/qemu-system-i386", "arm") is None
    assert memory.recall(str(tmp_path / "another-qemu"), "i386") is None  # another binary (and version)
    memory.forget("/usr/bin/qemu-system-i386", "i386")
    assert memory.recall("/usr/bin/qemu-system-i386", "i386") is None
    (tmp_path / "kvm.json").write_text("{not json")
    assert memory.recall("/usr/bin/qemu-system-i386", "i386") is None  # a corrupt record is no record


@pytest.mark.qemu
@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_accel_kvm_fails_with_reason_where_kvm_is_broken(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-s", *ARGS, "--arch=i386", "--minix-accel=kvm")
    out = result.stdout.str()
    if "ACCEL=kvm" in out:
        result.assert_outcomes(passed=1)  # a host where KVM works
        return
    result.assert_outcomes(errors=1)
    assert "--minix-accel=kvm was given but" in out
    assert "--minix-accel=auto" in out and "--minix-accel=tcg" in out


@pytest.mark.qemu
@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_guest_without_prompt_fails_within_boot_timeout(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    start = time.monotonic()
    # The guest needs ~4-5 s to reach login under TCG: a 2 s budget can never be met. A boot,
    # that is: a start from the boot cache boots nothing, so the cache is off here.
    result = pytester.runpytest_subprocess(
        *ARGS, "--arch=i386", "--minix-accel=tcg", "--minix-boot-timeout=2", "--minix-cold-boot"
    )
    elapsed = time.monotonic() - start
    out = result.stdout.str()
    result.assert_outcomes(errors=1)
    assert "BootTimeout" in out
    assert "--minix-boot-timeout=2" in out or "printed nothing on its serial console within 2 s" in out
    assert "Serial log: " in out and ".serial.log" in out
    assert elapsed < 60


def test_unknown_arch_and_guest_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--arch=mips")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--arch='mips' is not supported; use one of i386, arm or all" in result.stderr.str()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--minix-guest=nope")
    assert "Unknown guest 'nope'. Valid guests: " in result.stdout.str() + result.stderr.str()


@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_missing_qemu_names_the_package(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess(*ARGS, "--minix-qemu-i386=/nonexistent/qemu-system-i386")
    out = result.stdout.str()
    result.assert_outcomes(errors=1)
    assert "apt-get install qemu-system-x86 qemu-utils" in out and "--minix-qemu-i386" in out


@pytest.mark.qemu
def test_html_report_carries_serial_log_and_timeline(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html")
    pytest.importorskip("matplotlib")
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess(
        *ARGS, "--arch=i386", "--minix-accel=tcg", "--minix-cold-boot", "--html=report.html", "--self-contained-html"
    )
    result.assert_outcomes(passed=1)
    html = (pytester.path / "report.html").read_text()
    assert "serial log (i386)" in html and "boot timeline (i386)" in html
    assert "data:image/png;base64,iVBOR" in html  # the chart itself, embedded
