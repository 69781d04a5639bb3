"""Memory metrics: parsers on real output, and the host view and RAM bisection on the reference guest."""

from __future__ import annotations

import os

import pytest

from pytest_minix import VM
from pytest_minix.errors import BootStalled, BootTimeout, GuestPanic
from pytest_minix.measure.memory import meminfo_free_mib, parse_meminfo, qemu_faults, trial_outcome
from pytest_minix.measure.registry import METRICS, MetricContext

# Captured from the reference guest (i386, -m 256) with `cat /proc/meminfo`, first lines.
LINUX_MEMINFO = "MemTotal:         243584 kB\nMemFree:          226668 kB\nMemAvailable:     223824 kB\n"


def test_meminfo_free_formats() -> None:
    assert meminfo_free_mib(LINUX_MEMINFO) == pytest.approx(223824 / 1024)
    assert meminfo_free_mib("MemTotal: 1 kB\nMemFree: 2048 kB\n") == 2.0
    # MINIX procfs: pagesize total free largest cached (minix/fs/procfs/root.c; derived from the source).
    assert meminfo_free_mib("4096 65536 52000 51000 1200\n") == pytest.approx(52000 * 4096 / 2**20)
    assert meminfo_free_mib("nonsense") is None


def test_parse_meminfo_keeps_every_field() -> None:
    linux = parse_meminfo(LINUX_MEMINFO + "HugePages_Total:       0\nActive(anon):      4068 kB\n")
    assert linux == {
        "MemTotal": pytest.approx(243584 / 1024),
        "MemFree": pytest.approx(226668 / 1024),
        "MemAvailable": pytest.approx(223824 / 1024),
        "HugePages_Total": 0.0,
        "Active(anon)": pytest.approx(4068 / 1024),
    }
    minix = parse_meminfo("4096 65536 52000 51000 1200\n")
    assert minix["total_mib"] == 256.0 and minix["free_pages"] == 52000
    assert minix["free_mib"] == pytest.approx(meminfo_free_mib("4096 65536 52000 51000 1200\n") or 0)
    assert parse_meminfo("nonsense") == {}


def test_qemu_faults_parses_a_real_stat_line() -> None:
    minor, major = qemu_faults(os.getpid())  # this very process: the same /proc format as QEMU's
    assert minor > 0 and major >= 0


def test_host_view_and_guest_view(guest: VM, vm_pool) -> None:
    ctx = MetricContext(vm_pool, guest.arch)
    rss = METRICS["mem.host_rss"].measure(ctx)
    assert 16 < rss.samples[0] < 4096 and rss.extra["guest_ram_mib"] == guest.machine.spec.memory
    free = METRICS["mem.free_ram"].measure(ctx)
    assert 0 < free.samples[0] <= free.extra["total"] and free.extra["with_8MiB_in_tmp"] < free.samples[0] + 4
    faults = METRICS["mem.host_faults"].measure(ctx)
    assert faults.samples[0] == faults.extra["minor"] + faults.extra["major"] > 0
    kvm = METRICS["mem.guest_page_faults"].measure(ctx)
    if guest.accel == "tcg":
        assert kvm.unmeasurable == "QMP query-stats reports KVM's per-vCPU counters only; this VM runs under tcg"


def test_elf_text_size_on_a_real_elf_and_a_bzimage(tmp_path) -> None:
    import shutil
    from pathlib import Path

    from pytest_minix.measure.memory import elf_text_size

    size, sections = elf_text_size(Path(shutil.which("ls") or "/bin/ls"))  # any host ELF executable
    assert ".text" in sections and size >= sections[".text"] > 1000
    not_elf = tmp_path / "vmlinuz"
    not_elf.write_bytes(b"MZ" + b"\0" * 4096)  # a bzImage starts like a DOS/PE header, not ELF
    with pytest.raises(ValueError, match="is not an ELF file"):
        elf_text_size(not_elf)


def test_kernel_text_on_the_reference_guest_says_why_not(vm_pool) -> None:
    m = METRICS["mem.kernel_text"].measure(MetricContext(vm_pool, vm_pool.config.arches[0]))
    assert m.unmeasurable is not None and "no ELF section headers" in m.unmeasurable


def test_min_ram_trials_say_what_happened() -> None:
    """Each outcome from the console text MINIX printed (starved boots OBSERVED at 16 and 19 MiB)."""
    starved = "MINIX 3.4.0. Copyright 2016\nRoot device name is /dev/c0d0p0\nanon_pagefault: out of memory\n"
    stalled = BootStalled("stopped printing before its login prompt: nothing for 30 s")
    assert trial_outcome(stalled, starved, False) == ("out of memory", "anon_pagefault: out of memory")
    assert trial_outcome(stalled, "MINIX 3.4.0.\nMultiuser startup in progress ...\n", False)[0] == "stalled"
    assert trial_outcome(BootTimeout("printed nothing"), "", False)[0] == "nothing printed"
    assert trial_outcome(GuestPanic("kernel panic: "), "kernel panic: no memory\n", False)[0] == "panic"
    assert trial_outcome(None, "login: \n", True) == ("clean", "")
    assert trial_outcome(None, starved + "login: \n", True)[0] == "degraded"
    assert trial_outcome(None, "login: \n", False)[0] == "degraded"
