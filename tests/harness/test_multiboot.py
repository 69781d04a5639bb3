"""Boot files extracted from a MINIX-layout CD reach a real QEMU multiboot kernel intact and in order.

The kernel is ``multiboot_stub``: it prints the command line and every module's string and size
on COM1, so the test sees exactly what QEMU's multiboot loader passed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from minix_layout import MODULES, build_minix_iso
from multiboot_stub import BSS_END, ENTRY, FLAGS, LOAD_ADDR, LOAD_END, MULTIBOOT_MAGIC, stub_kernel

from pytest_minix.media.iso import extract_boot

QEMU = shutil.which("qemu-system-i386")
APPEND = "bootcd=1 cdproberoot=1 console=tty00"


def test_stub_header() -> None:
    """The header QEMU looks for: in the first 8 KiB, 4-byte aligned, checksum 0, a.out kludge fields."""
    image = stub_kernel()
    words = [int.from_bytes(image[i : i + 4], "little") for i in range(0, 32, 4)]
    assert words[0] == MULTIBOOT_MAGIC == 0x1BADB002
    assert words[1] == FLAGS == 1 << 16
    assert (words[0] + words[1] + words[2]) & 0xFFFFFFFF == 0
    assert words[3:] == [LOAD_ADDR, LOAD_ADDR, LOAD_END, BSS_END, ENTRY]
    assert LOAD_ADDR + len(image) == LOAD_END
    assert LOAD_ADDR < ENTRY < LOAD_END
    assert image.endswith(b"END\n\0")


def run_qemu(args: list[str], serial: Path, timeout: float = 20.0) -> str:
    """Run QEMU until the stub prints END (or the timeout); QEMU never outlives this call."""
    log = serial.with_suffix(".qemu.log")
    with log.open("wb") as qemu_log:
        proc = subprocess.Popen([*args, "-serial", f"file:{serial}"], stdout=qemu_log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if serial.exists() and b"\nEND\n" in serial.read_bytes():
                    break
                time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait(timeout=10)
    out = serial.read_text(errors="replace") if serial.exists() else ""
    assert "END" in out, (
        f"stub did not finish in {timeout} s; serial: {out!r}; qemu: {log.read_text(errors='replace')!r}"
    )
    return out


@pytest.mark.qemu
@pytest.mark.skipif(QEMU is None, reason="qemu-system-i386 not installed (apt-get install qemu-system-x86)")
def test_extracted_boot_set_boots_under_qemu(tmp_path: Path) -> None:
    # Distinct sizes, some not multiples of a page or sector, so a swapped or cut module shows.
    modules = {name: bytes([i]) * (1000 * i + 37 * i * i + 1) for i, name in enumerate(MODULES, 1)}
    iso = tmp_path / "minix.iso"
    build_minix_iso(iso, stub_kernel(), modules)
    boot = extract_boot(iso, tmp_path / "boot")
    assert boot.kernel.read_bytes() == stub_kernel()

    assert QEMU is not None
    out = run_qemu(
        [
            QEMU,
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-m",
            "64",
            "-nodefaults",
            "-display",
            "none",
            "-no-user-config",
            "-kernel",
            str(boot.kernel),
            "-initrd",
            boot.initrd_arg(),
            "-append",
            APPEND,
            "-drive",
            f"file={iso},if=ide,index=2,media=cdrom,readonly=on,format=raw",
        ],
        tmp_path / "serial.out",
    )
    lines = out.splitlines()
    # QEMU's multiboot loader puts the kernel's file name in front of the -append text.
    assert lines[0] == f"CMDLINE {boot.kernel} {APPEND}"
    expected: list[str] = []
    for path in boot.modules:
        expected += [f"MODULE {path}", f"MODSIZE {path.stat().st_size}"]
    assert lines[1:-2] == expected
    assert [f"MODSIZE {len(data)}" for data in modules.values()] == expected[1::2]
    assert lines[-2:] == ["MODS 12", "END"]
