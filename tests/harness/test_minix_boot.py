"""The MINIX boot path end to end, with a stub kernel in place of MINIX's.

Release ISO served over loopback -> fetch, bz2, hashes -> pycdlib extraction -> the
minix profile's QEMU command line (multiboot kernel + 12 modules, CD or disk variant)
-> a real QEMU. The stub (``multiboot_stub``) prints on COM1 the command line and the
modules QEMU's multiboot loader handed it, so the test sees exactly what MINIX would
get. Everything up to MINIX's own first instruction is real.
"""

from __future__ import annotations

import bz2
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from minix_layout import MODULES, build_minix_iso
from multiboot_stub import stub_kernel

from pytest_minix.errors import ConfigError
from pytest_minix.guest.pool import HarnessConfig, VMPool
from pytest_minix.media.iso import extract_boot
from pytest_minix.media.minix import MinixSource
from pytest_minix.profiles import load_profile
from pytest_minix.qemu.machine import Machine

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="needs qemu-system-i386")


@pytest.fixture
def stub_iso(tmp_path: Path) -> Path:
    return build_minix_iso(tmp_path / "stub.iso", stub_kernel())


def pool_for(tmp_path: Path, src: MinixSource) -> VMPool:
    return VMPool(HarnessConfig(guest="minix", arches=("i386",), accel="tcg", log_dir=tmp_path / "logs", minix=src))


def run_stub(pool: VMPool) -> tuple[Machine, list[str]]:
    machine = pool.machine(pool.spec("i386"))
    machine.launch()
    machine.cont()
    machine.console.expect(r"(?m)^END", 30, what="the stub kernel's END line")
    return machine, [line.text for line in machine.console.lines()]


def check_modules(lines: list[str], kernel: Path) -> list[Path]:
    mods = [Path(ln.split(" ", 1)[1]) for ln in lines if ln.startswith("MODULE ")]
    assert [p.name for p in mods] == list(MODULES)
    assert all(p.parent == kernel.parent for p in mods)
    sizes = [int(ln.split()[1]) for ln in lines if ln.startswith("MODSIZE ")]
    assert sizes == [p.stat().st_size for p in mods]
    assert "MODS 12" in lines
    return mods


@pytest.mark.qemu
def test_release_cd_boots_kernel_and_modules_by_multiboot(tmp_path, http_server, stub_iso, monkeypatch):
    url = http_server.add("/minix_R9.9.9.iso.bz2", bz2.compress(stub_iso.read_bytes()))
    manifest = tmp_path / "releases.toml"
    manifest.write_text(f'[releases."9.9.9"]\nfile = "minix_R9.9.9.iso"\nurl = "{url}"\n')
    monkeypatch.setenv("PYTEST_MINIX_RELEASES", str(manifest))
    monkeypatch.setenv("PYTEST_MINIX_CACHE", str(tmp_path / "cache"))
    pool = pool_for(tmp_path, MinixSource(release="9.9.9"))
    try:
        machine, lines = run_stub(pool)
        kernel = Path(lines[0].split()[1])
        assert lines[0] == f"CMDLINE {kernel} bootcd=1 cdproberoot=1 console=tty00"
        assert kernel.read_bytes() == stub_kernel() and kernel.is_relative_to(tmp_path / "cache" / "boot")
        check_modules(lines, kernel)
        argv = machine.argv
        assert argv[argv.index("-m") + 1] == "256" and argv[argv.index("-nic") + 1] == "none"
        assert "cttyline" not in " ".join(argv)
        cd = next(b for b in machine.qmp.execute("query-block") if b["device"] == "ide1-cd0")
        cached = tmp_path / "cache" / "images" / "9.9.9" / "minix_R9.9.9.iso"
        assert cd["inserted"]["ro"] is True and cd["inserted"]["file"] == str(cached)
        # fresh_guest works on a live CD too: the VM state goes to the device-less vmstate drive.
        assert machine.qmp.hmp("savevm pm-fresh").strip() == ""
        assert machine.qmp.hmp("loadvm pm-fresh").strip() == ""
        assert "pm-fresh" in machine.qmp.hmp("info snapshots")
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == hashlib.sha256(stub_iso.read_bytes()).hexdigest()
    finally:
        pool.close()
    assert machine.proc is not None and machine.proc.poll() is not None, "QEMU outlived its pool"
    assert len(http_server.requests("/minix_R9.9.9.iso.bz2")) == 1


@pytest.mark.qemu
def test_the_machine_has_every_device_the_guest_profile_needs(tmp_path, stub_iso):
    """MINIX prints nothing at all without a display adapter: -nodefaults must not remove it.

    The started QEMU is asked over QMP which devices it really has, so an argv that
    builds but does not create the device fails too.
    """
    needed = load_profile("minix").arch("i386").devices
    assert "VGA" in needed
    pool = pool_for(tmp_path, MinixSource(image=stub_iso))
    try:
        machine = pool.machine(pool.spec("i386"))
        machine.launch()
        argv = machine.argv
        assert "-nodefaults" in argv
        given = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
        assert all(d in given for d in needed), (needed, given)
        pci = [dev for bus in machine.qmp.execute("query-pci") for dev in bus["devices"]]
        assert any(dev["class_info"].get("desc") == "VGA controller" for dev in pci), pci
    finally:
        pool.close()


def test_a_qemu_without_a_needed_device_is_refused_with_the_fix(tmp_path, stub_iso, monkeypatch):
    from pytest_minix.qemu import binary as qemu_binary

    # A QEMU built without display adapters (as some reduced builds are): only the debug console.
    monkeypatch.setattr(qemu_binary, "qemu_devices", lambda qemu: frozenset({"isa-debugcon"}))
    pool = pool_for(tmp_path, MinixSource(image=stub_iso))
    try:
        with pytest.raises(ConfigError, match=r"needs the QEMU device\(s\) VGA.*qemu-system-x86"):
            pool.spec("i386")
    finally:
        pool.close()


@pytest.mark.qemu
def test_users_disk_image_boots_rootdev_c0d0p0_and_is_never_written(tmp_path, stub_iso):
    boot_dir = tmp_path / "boot"  # kernel and modules as a user copies them out of /boot/minix_default
    extract_boot(stub_iso, boot_dir)
    disk = tmp_path / "minix.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    pool = pool_for(tmp_path, MinixSource(image=disk, boot_dir=boot_dir))
    try:
        machine, lines = run_stub(pool)
        assert lines[0] == f"CMDLINE {boot_dir / 'kernel'} rootdevname=c0d0p0 console=tty00"
        check_modules(lines, boot_dir / "kernel")
        hd = next(b for b in machine.qmp.execute("query-block") if b["device"] == "ide0-hd0")
        assert hd["inserted"]["backing_file"] == str(disk) and hd["inserted"]["file"] != str(disk)
        # Write through the guest's view of the disk: the overlay takes it, the user's image does not.
        machine.qmp.hmp('qemu-io ide0-hd0 "write -P 0x5a 0 64k"')
        assert "wrote 65536/65536 bytes at offset 0" in machine.qemu_stderr()  # qemu-io reports on QEMU's stdout
    finally:
        pool.close()
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before


@pytest.mark.qemu
def test_a_guest_that_never_prompts_fails_with_its_serial_log(pytester: pytest.Pytester, stub_iso: Path) -> None:
    """The stub never says `login:`: the session errors (not skips) with BootTimeout and the log path."""
    pytester.makepyfile(test_inner="def test_x(guest):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--minix-image={stub_iso}", "--minix-accel=tcg", "--minix-boot-timeout=4"
    )
    result.assert_outcomes(errors=1)
    out = re.sub(r"\s+", " ", result.stdout.str())
    assert "BootTimeout" in out and "never reached its login prompt within --minix-boot-timeout=4 s" in out
    log = re.search(r"Serial log: (\S+\.serial\.log)", out)
    assert log is not None
    assert "CMDLINE " in Path(log.group(1)).read_text()


def test_network_is_off_unless_asked_and_then_minix_gets_an_e1000(tmp_path, stub_iso):
    for network, nic in ((False, "none"), (True, "user,model=e1000")):
        pool = VMPool(
            HarnessConfig(
                guest="minix",
                arches=("i386",),
                accel="tcg",
                log_dir=tmp_path / "logs",
                network=network,
                minix=MinixSource(image=stub_iso),
            )
        )
        try:
            argv = pool.machine(pool.spec("i386")).build_argv()
            assert argv[argv.index("-nic") + 1] == nic
            assert not any("hostfwd" in a or "tcp:" in a for a in argv)
        finally:
            pool.close()


@pytest.mark.qemu
def test_a_guest_that_is_not_what_the_profile_says_is_refused(tmp_path):
    """A Linux passed off as MINIX: login works, but `uname -s` gives it away and the boot fails."""
    from dataclasses import replace

    from pytest_minix.errors import VMError

    pool = VMPool(HarnessConfig(guest="reference", arches=("i386",), accel="tcg", log_dir=tmp_path / "logs"))
    pool.profile = replace(pool.profile, uname_s="Minix")
    try:
        with pytest.raises(VMError, match=r"`uname -s` printed 'Linux', not 'Minix'") as exc:
            pool.boot("i386")
        assert "Serial log: " in str(exc.value)
    finally:
        pool.close()


@pytest.mark.qemu
def test_kernel_timing_boots_use_cttyline_and_measure_from_the_firmware(tmp_path, stub_iso):
    """MINIX's kernel_init method, run for real on the stub kernel: the profile's banner marker is swapped
    for the stub's first line, everything else (cttyline boot args, SeaBIOS debugcon, timing) is as for MINIX."""
    from dataclasses import replace

    from pytest_minix.measure.registry import METRICS, MetricContext
    from pytest_minix.profiles import Marker

    pool = pool_for(tmp_path, MinixSource(image=stub_iso))
    # The whole line (the stub prints it byte by byte): the test reads it back from the log.
    banner = Marker("kernel", re.compile(r"^CMDLINE [^\r\n]*\r?\n", re.MULTILINE))
    pool.profile = replace(pool.profile, markers=(banner,))
    try:
        ctx = MetricContext(pool, "i386", boot_rounds=2)
        init = METRICS["boot.kernel_init"].measure(ctx)
        ready = METRICS["boot.kernel_ready"].measure(ctx)
    finally:
        pool.close()
    assert init.unmeasurable is None and len(init.samples) == 2 and init.bound == "upper" and init.timing
    # Separate boots, so no pairwise comparison (load moves each); both are real, positive times.
    assert all(a > 0 for a in init.samples) and len(ready.samples) == 2 and all(b > 0 for b in ready.samples)
    assert ready.bound is None and "Booting from ROM" not in init.note
    log = Path(init.extra["logs"][0]).read_text()
    assert "bootcd=1 cdproberoot=1 console=tty00 cttyline=0 cttybaud=115200" in log
    assert init.conditions.accel == "tcg" and len(init.conditions.image_sha256) == 64
