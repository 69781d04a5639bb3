"""Faults around whole sessions: a killed xdist worker, two sessions at once, a full disk,
a kernel for the wrong machine, an unreadable image.

QEMU processes are found by PID (the test records them, and their parent chain is checked
through /proc), never by name.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_http import LoopbackHTTPServer
from minix_layout import MODULES, build_minix_iso

from pytest_minix.errors import HarnessError, ImageError
from pytest_minix.guest.pool import HarnessConfig, VMPool
from pytest_minix.media.images import ImageStore
from pytest_minix.media.minix import MinixSource, check_kernel_machine, elf_machine, minix_media
from pytest_minix.media.releases import Release
from pytest_minix.qemu import statedir
from pytest_minix.qemu.console import ConsoleLogWarning

# Rows of the fault matrix: repeated by --fault-trials, checked for leftovers (conftest.no_leaks).
pytestmark = pytest.mark.usefixtures("fault_trial", "no_leaks")

ARGS = ("-p", "no:cacheprovider", "--minix-guest=reference", "--arch=i386", "--minix-accel=tcg")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def _gone(pid: int) -> bool:
    fields = _stat(pid)
    return fields is None or fields[0] in ("Z", "X")


def _ppid(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else 0


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        pid = _ppid(pid)
        out.append(pid)
    return out


def _wait(pred: object, timeout: float) -> bool:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return bool(pred())


# ---- 1. an xdist worker killed while it holds a guest ------------------------------------------

HOLD = """
import os, time
from pathlib import Path

def test_hold(guest):
    m = guest.machine
    Path(os.environ["PM_OUT"]).write_text(f"{os.getpid()} {m.pid} {m.state.path}")
    time.sleep(600)
"""

POOL_ONLY = """
def test_pool(vm_pool):
    assert vm_pool.state.path.is_dir()
"""


@pytest.mark.slow
@pytest.mark.qemu
def test_killed_xdist_worker_takes_its_qemu_along_and_is_swept(tmp_path: Path, private_runtime: Path) -> None:
    pytest.importorskip("xdist")
    run = private_runtime
    (tmp_path / "test_hold.py").write_text(HOLD)
    out = tmp_path / "out.txt"
    env = {**os.environ, "PM_OUT": str(out), "XDG_RUNTIME_DIR": str(run)}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        *ARGS,
        "-n",
        "2",
        "--max-worker-restart=0",
        f"--basetemp={tmp_path / 'bt'}",
        str(tmp_path / "test_hold.py"),
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if not _wait(lambda: (out.is_file() and out.read_text()) or proc.poll() is not None, 300):
            pytest.fail("the worker never booted its guest")
        if proc.poll() is not None:
            pytest.fail(f"the session ended early:\n{proc.stdout.read().decode() if proc.stdout else ''}")
        worker, qemu, state_s = out.read_text().split()
        worker_pid, qemu_pid, state = int(worker), int(qemu), Path(state_s)
        # The worker is the session's child, QEMU the worker's descendant: all by PID.
        assert _ppid(worker_pid) == proc.pid
        assert worker_pid in _ancestors(qemu_pid)
        assert state.parent == run / f"pytest-minix-{os.getuid()}"
        assert (state / statedir.OWNER).read_text().strip() == str(worker_pid)
        assert str(qemu_pid) in (state / statedir.QEMU_PIDS).read_text().split()
        os.kill(worker_pid, signal.SIGKILL)
        # PR_SET_PDEATHSIG: QEMU dies with the thread that spawned it.
        assert _wait(lambda: _gone(qemu_pid), 5), f"QEMU {qemu_pid} outlived its SIGKILLed worker {worker_pid}"
        # The session notices the lost worker and ends; it does not wait for the 600 s sleep.
        output = proc.communicate(timeout=90)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode not in (0, None), output
    assert "crashed" in output or "gw0" in output or "gw1" in output, output
    assert state.is_dir(), "nothing could clean up after the worker at once"
    # A next session (any session with a VM pool) sweeps the dead worker's directory.
    (tmp_path / "next").mkdir()
    (tmp_path / "next" / "test_pool.py").write_text(POOL_ONLY)
    nxt = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *ARGS, "test_pool.py"],
        cwd=tmp_path / "next",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    assert not state.exists(), "the next session did not sweep the dead worker's state directory"


# ---- 2. two sessions on one machine at once ----------------------------------------------------

CLAIM = """
[[claim]]
id = "t.ram"
statement = "The guest reports 200-256 MiB of RAM"
source = "test"
guest = "reference"
arch = "i386"
metric = "mem.total_ram"
unit = "MiB"
min = 200
max = 256
measured_as = "MemTotal"
"""

TWIN = """
import json, os, pytest
from pathlib import Path

pytestmark = pytest.mark.claims("mem.")

def test_files(guest, tmp_path):
    tag = os.environ["PM_TAG"]
    data = (tag * 3000).encode() + bytes(range(256))
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    guest.shell.put(local, "/tmp/twin.bin")
    guest.shell.run("cat /tmp/twin.bin /tmp/twin.bin > /tmp/twin2.bin").check()
    assert guest.shell.get("/tmp/twin2.bin", tmp_path / "down.bin") == data + data
    m = guest.machine
    Path(os.environ["PM_OUT"]).write_text(json.dumps({
        "state": str(m.state.path), "dir": str(m.dir), "pid": m.pid, "argv": m.argv,
        "serial_log": str(m.serial_log)}))

def test_claim(claim_verdict, enforce_verdict):
    enforce_verdict(claim_verdict)
"""


@pytest.mark.slow
@pytest.mark.qemu
def test_two_sessions_at_once_share_the_cache_and_nothing_else(tmp_path: Path, private_runtime: Path) -> None:
    from pytest_minix.paths import cache_root

    run = private_runtime
    # A leftover of a killed reference build makes both sessions go through the build lock
    # (to tidy it up) at the same moment: one takes it, the other must not wait forever.
    stale = cache_root() / "reference" / f".build-i386-pmtest-{os.getpid()}"
    stale.mkdir(parents=True, exist_ok=True)
    procs = []
    for tag in ("A", "B"):
        d = tmp_path / tag
        d.mkdir()
        (d / "test_twin.py").write_text(TWIN)
        (d / "claims.toml").write_text(CLAIM)
        env = {**os.environ, "PM_TAG": tag, "PM_OUT": str(d / "out.json"), "XDG_RUNTIME_DIR": str(run)}
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            *ARGS,
            "--minix-claims=claims.toml",
            "--minix-claims-select=t.*",
            f"--minix-claims-report={d / 'report' / 'claims.json'}",
            f"--basetemp={d / 'bt'}",
            "test_twin.py",
        ]
        procs.append(subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        with contextlib.suppress(OSError):
            stale.rmdir()
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(outs)
    assert not stale.exists(), "the stale build directory was not tidied under the lock"
    a, b = (json.loads((tmp_path / t / "out.json").read_text()) for t in ("A", "B"))
    # Private state directories (sockets, overlays) and logs: nothing shared.
    assert a["state"] != b["state"] and a["pid"] != b["pid"] and a["serial_log"] != b["serial_log"]
    for mine, other in ((a, b), (b, a)):
        for arg in mine["argv"]:
            assert other["state"] not in arg, f"session uses the other session's state dir: {arg}"
            if str(run) in arg:  # anything in the runtime dir is this session's own (the cache may be anywhere)
                assert mine["state"] in arg, arg
    for t in ("A", "B"):
        report = json.loads((tmp_path / t / "report" / "claims.json").read_text())
        assert [(v["id"], v["outcome"]) for v in report["verdicts"]] == [("t.ram", "confirmed")]
    assert not list((run / f"pytest-minix-{os.getuid()}").iterdir()), "a session left its state directory"


# ---- 3. a full disk --------------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``; skips unless mounting works (root)."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(directory: Path) -> None:
    """Fill the file system holding ``directory`` to the last block."""
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError), open(directory / "filler2", "wb") as f:
        while True:
            f.write(b"\0" * 512)
            f.flush()


@pytest.fixture(scope="module")
def big_iso(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A ~5 MB ISO: the MINIX layout, padded with random (incompressible) or zero bytes by the tests."""
    return build_minix_iso(tmp_path_factory.mktemp("iso") / "minix.iso").read_bytes()


def _nothing_taken_as_complete(st: ImageStore, rel: Release) -> None:
    assert not st.image_path(rel).exists(), "an image is under its real name"
    assert not (st.release_dir(rel) / "record.json").exists(), "a record was written"


def test_disk_full_while_downloading_is_a_clear_error(
    tmp_path: Path, http_server: LoopbackHTTPServer, big_iso: bytes
) -> None:
    packed = bz2.compress(big_iso + os.urandom(5 << 20))  # ~5 MB that does not compress: the download fills it
    rel = Release(name="9.9.9", file="minix_R9.9.9-full.iso", url=http_server.add("/full.iso.bz2", packed))
    with small_tmpfs(tmp_path / "mnt") as mnt:
        st = ImageStore(mnt / "cache", notify=lambda m: None, progress=False, timeout=5.0, retries=1)
        with pytest.raises(HarnessError) as exc:
            st.fetch(rel)
        msg = str(exc.value)
        assert "no space left" in msg.lower() and rel.download_name in msg, msg
        _nothing_taken_as_complete(st, rel)


def test_disk_full_while_decompressing_is_a_clear_error(
    tmp_path: Path, http_server: LoopbackHTTPServer, big_iso: bytes
) -> None:
    packed = bz2.compress(big_iso + b"\0" * (5 << 20))  # a small download that decompresses to ~5 MB
    assert len(packed) < 1 << 20
    rel = Release(name="9.9.9", file="minix_R9.9.9-full.iso", url=http_server.add("/zero.iso.bz2", packed))
    with small_tmpfs(tmp_path / "mnt") as mnt:
        st = ImageStore(mnt / "cache", notify=lambda m: None, progress=False, timeout=5.0, retries=1)
        with pytest.raises(ImageError) as exc:
            st.fetch(rel)
        msg = str(exc.value)
        assert "no space left on device" in msg.lower() and rel.download_name in msg, msg
        assert "Nothing was cached" in msg
        _nothing_taken_as_complete(st, rel)
        assert not list(st.release_dir(rel).glob("*.part")), "a partial image was left behind"


@pytest.mark.slow
@pytest.mark.qemu
def test_full_log_disk_is_reported_and_the_vm_goes_on(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "mnt", "1m") as mnt:
        logs = mnt / "logs"
        logs.mkdir()
        _fill(mnt)
        pool = VMPool(HarnessConfig(guest="reference", arches=("i386",), accel="tcg", log_dir=logs))
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                vm = pool.boot("i386")
                r = vm.shell.run("echo still-here; uname -s").check()
            assert r.stdout == "still-here\nLinux\n"
            err = vm.console.log_error
            assert err is not None and err.errno == errno.ENOSPC
            msg = vm.console.log_error_message or ""
            assert str(vm.log_path) in msg and "no space left on device" in msg, msg
            ours = [w for w in caught if issubclass(w.category, ConsoleLogWarning)]
            assert any(str(vm.log_path) in str(w.message) for w in ours), [str(w.message) for w in caught]
            assert len([w for w in ours if str(vm.log_path) in str(w.message)]) == 1, "warned more than once"
        finally:
            pool.close()


# ---- 4. a kernel for the wrong machine -----------------------------------------------------------


def elf_header(machine: int, *, elfclass: int = 1, data: int = 1) -> bytes:
    """A minimal ELF header (the 52 bytes of an ELF32 one) for ``machine``."""
    order = "<" if data == 1 else ">"
    ident = b"\x7fELF" + bytes([elfclass, data, 1]) + b"\0" * 9
    return ident + struct.pack(order + "HHIIIIIHHHHHH", 2, machine, 1, 0x100000, 52, 0, 0, 52, 32, 0, 40, 0, 0)


def test_elf_machine_is_read_and_only_elf_is_checked(tmp_path: Path) -> None:
    k = tmp_path / "kernel"
    for head, want in (
        (elf_header(3), 3),
        (elf_header(40), 40),
        (elf_header(40, data=2), 40),
        (elf_header(62, elfclass=2), 62),
        (b"\x7fELF fake kernel " * 4, None),
        (b"MZ" + b"\0" * 64, None),
        (b"\x7fEL", None),
    ):
        k.write_bytes(head)
        assert elf_machine(k) == want, head[:20]
    k.write_bytes(elf_header(3))
    check_kernel_machine(k, "i386")
    k.write_bytes(b"\x7fELF fake kernel " * 4)  # not a valid ELF header: not checked
    check_kernel_machine(k, "i386")
    k.write_bytes(elf_header(62, elfclass=2))
    with pytest.raises(ImageError, match=r"x86-64 \(EM_X86_64\) \(e_machine 62\).*i386 \(EM_386\)"):
        check_kernel_machine(k, "i386")


INNER = """
def test_boot(guest):
    pass
"""


def test_arm_kernel_for_i386_fails_before_qemu_starts(pytester: pytest.Pytester, tmp_path: Path) -> None:
    iso = build_minix_iso(tmp_path / "minix.iso")
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "kernel").write_bytes(elf_header(40) + b"\0" * 4096)
    for i, name in enumerate(MODULES, 1):
        (boot / name).write_bytes(f"{name} ".encode() * i)
    logs = tmp_path / "logs"
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--minix-guest=minix",
        "--arch=i386",
        "--minix-accel=tcg",
        f"--minix-image={iso}",
        f"--minix-boot-dir={boot}",
        f"--minix-log-dir={logs}",
    )
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "32-bit ARM (EM_ARM) (e_machine 40)" in out and "i386 (EM_386)" in out, out
    assert str(boot / "kernel") in out
    assert not list(logs.glob("*.qemu.log")), "QEMU was started"
    # The same directory with an i386 kernel gets past the check (to QEMU, which boots the fake kernel).
    (boot / "kernel").write_bytes(elf_header(3) + b"\0" * 4096)
    media = minix_media("i386", MinixSource(image=iso, boot_dir=boot))
    assert media.files["kernel"] == boot / "kernel"


# ---- 5. an unreadable image ------------------------------------------------------------------------


def test_unreadable_image_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: root reads any file, so an unreadable image cannot be made here")
    iso = build_minix_iso(tmp_path / "minix.iso")
    iso.chmod(0)
    try:
        with pytest.raises(ImageError) as exc:
            minix_media("i386", MinixSource(image=iso))
    finally:
        iso.chmod(0o644)
    msg = str(exc.value)
    assert str(iso) in msg and "cannot be read" in msg and "Permission denied" in msg, msg
