"""Warm starts from the boot cache, for real: the reference guest on i386 under TCG.

After a cold boot and login a shared VM is saved in the boot cache
(``pytest_minix/guest/bootcache.py``); a later session starts from that state in well under
a second instead of booting. These tests check that a warm guest is clean and has the right
clock, that anything which changes the machine gives it an entry of its own, that a damaged
entry or a failed restore costs a warning and a cold boot (never a wrong or broken guest),
that two sessions saving at once leave one good entry, and that ``--minix-cold-boot``, the
MCP server and ``pytest-minix states`` behave.

The whole module runs with ``PYTEST_MINIX_CACHE`` pointing at a private cache whose
``reference`` (and ``apt``) are symlinks into the session's real cache: the built guest is
found, nothing is rebuilt, and every saved state stays private. One cold boot
(``origin``) saves the entry most tests start from; a test that damages or adds entries
works on a copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_minix.guest.bootcache import BadState, BootCache, SavedState, StateKey, state_key
from pytest_minix.guest.pool import HarnessConfig, VMOptions, VMPool, VMStart, WarmStartWarning
from pytest_minix.mcp.sessions import SessionManager
from pytest_minix.media.images import sha256_file
from pytest_minix.paths import CACHE_ENV, cache_root

pytestmark = pytest.mark.qemu

ARCH = "i386"
# The parts of the real cache a private cache links to: the built reference guest, and the
# Debian packages it is built from (only used if it had to be built).
SHARED = ("reference", "apt")
CHILD_ARGS = ("-p", "no:cacheprovider", "--minix-guest=reference", f"--arch={ARCH}", "--minix-accel=tcg")
CHILD_TEST = """
def test_guest(guest):
    assert guest.shell.run("echo up").stdout == "up\\n"
"""


def make_cache(path: Path, real: Path) -> Path:
    """A cache directory at ``path`` that shares the built reference guest of ``real``, and nothing else."""
    path.mkdir(parents=True)
    for name in SHARED:
        (real / name).mkdir(exist_ok=True)  # a link to nothing would make a build fail, not land in ``real``
        (path / name).symlink_to(real / name, target_is_directory=True)
    return path


def harness(log_dir: Path, boot_cache: Path | None = None, **kw: Any) -> HarnessConfig:
    return HarnessConfig(guest="reference", arches=(ARCH,), accel="tcg", log_dir=log_dir, boot_cache=boot_cache, **kw)


def entry_dirs(states: Path) -> list[str]:
    """Every directory in a boot cache: entries, and any temporary or trash directory left behind."""
    return sorted(d.name for d in states.iterdir() if d.is_dir())


@contextlib.contextmanager
def no_warm_start_warning() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    bad = [str(w.message) for w in caught if issubclass(w.category, WarmStartWarning)]
    assert not bad, f"unexpected warm start warnings: {bad}"


def one_warning(caught: pytest.WarningsRecorder) -> str:
    msgs = [str(w.message) for w in caught if issubclass(w.category, WarmStartWarning)]
    assert len(msgs) == 1, msgs
    return msgs[0]


def guest_number(vm: Any, command: str) -> float:
    return float(vm.shell.run(command).check().stdout.split()[0])


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``PYTEST_MINIX_CACHE`` for the whole module: the real reference guest, a private ``states``."""
    real = cache_root()
    cache = make_cache(tmp_path_factory.mktemp("warm") / "cache", real)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(cache))
        yield cache


@dataclass(frozen=True)
class Origin:
    """The module's one cold boot, saved in ``<private cache>/states``, and what its session saw."""

    states: Path
    entry: Path
    parts: dict[str, Any]
    saved_at: float
    state_size: int
    starts: list[VMStart]
    boots: int
    booted: bool  # vm.boot was set
    uptime: float  # the guest's /proc/uptime, measured after the save
    measured_at: float  # host wall clock of that measurement


@pytest.fixture(scope="module")
def origin(private_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    """Session A: a cold boot into the default boot cache; then it writes files the saved state must not have."""
    states = private_cache / "states"
    pool = VMPool(harness(tmp_path_factory.mktemp("origin-logs")))
    try:
        with no_warm_start_warning():
            vm = pool.get(ARCH)
        starts, boots, booted = list(pool.starts), len(pool.boots), vm.boot is not None
        # Written after the save, in RAM (/root is the initramfs) and on the disk: a warm start must see neither.
        vm.shell.run("echo secret > /root/x && echo secret > /mnt/disk/x && sync").check()
        uptime, measured_at = guest_number(vm, "cat /proc/uptime"), time.time()
    finally:
        pool.close()
    assert starts and starts[0].state, f"session A saved nothing: {starts}"
    entry = states / starts[0].state
    meta = json.loads((entry / "meta.json").read_text())
    yield Origin(
        states,
        entry,
        meta["parts"],
        float(meta["saved_at"]),
        (entry / "vm.state").stat().st_size,
        starts,
        boots,
        booted,
        uptime,
        measured_at,
    )


def copy_states(origin: Origin, dest: Path) -> Path:
    """A boot cache of the test's own holding a copy of the origin entry."""
    states = dest / "states"
    states.mkdir(parents=True)
    shutil.copytree(origin.entry, states / origin.entry.name)
    return states


def origin_key(origin: Origin) -> StateKey:
    return StateKey(origin.entry.name, origin.parts)


# -- 1. a second session starts warm ---------------------------------------------------------------------------


def test_a_second_session_starts_warm_clean_and_on_time(origin: Origin, tmp_path: Path) -> None:
    # Session A booted cold and saved its logged-in VM.
    assert [s.how for s in origin.starts] == ["cold"]
    assert origin.boots == 1 and origin.booted
    assert origin.starts[0].note == "no saved state for this machine yet"
    assert entry_dirs(origin.states) == [origin.entry.name]
    assert BootCache(origin.states).lookup(origin_key(origin)) is not None  # whole and verified

    # Let the saved state age, so that a guest clock left as it was would be visibly behind.
    time.sleep(max(0.0, origin.saved_at + 5.0 - time.time()))
    pool = VMPool(harness(tmp_path / "logs"))  # same settings, same (default) boot cache
    try:
        with no_warm_start_warning():
            vm = pool.get(ARCH)
        # The guest's own monotonic time did not run while the state sat in the cache: it is where
        # session A left it, though more than 5 s of wall time went by.
        uptime, gap = guest_number(vm, "cat /proc/uptime"), time.time() - origin.measured_at
        assert gap >= 5.0
        assert uptime < origin.uptime + gap - 3.0
        assert [s.how for s in pool.starts] == ["warm"]
        start = pool.starts[0]
        assert start.state == origin.entry.name and start.saved_at == pytest.approx(origin.saved_at)
        assert start.seconds < 5.0  # a cold boot takes ~6 s under TCG
        assert pool.boots == [] and vm.boot is None
        assert vm.warm is not None and vm.warm.clock_set and vm.warm.state == origin.entry.name
        # The guest clock stood still while the state sat in the cache, and was set on the restore.
        assert start.clock_lag >= 4.0
        assert abs(guest_number(vm, "date +%s") - time.time()) <= 3.0
        # Nothing session A did after the save is there: not in RAM, not on the disk.
        assert vm.shell.run("test -e /root/x").status == 1
        assert vm.shell.run("test -e /mnt/disk/x").status == 1
        assert vm.shell.run("test -d /mnt/disk && echo ok").stdout == "ok\n"
        # The guest did not boot: its serial log holds only the harness's commands.
        log = vm.log_path.read_text(errors="replace")
        assert "Linux version" not in log and "login:" not in log
        assert vm.shell.run("uname -s").stdout == "Linux\n"
    finally:
        pool.close()
    # Starting from it did not change the entry (its disk layer backs the new overlay, read-only).
    BootCache.verify(BootCache(origin.states).lookup(origin_key(origin)) or pytest.fail("entry gone"))


def test_a_saved_state_carries_ram_and_disk_as_they_were(private_cache: Path, tmp_path: Path) -> None:
    """What was in RAM and on the disk at the save is there after a warm start (the disk layer was flushed)."""
    states = tmp_path / "states"
    pool = VMPool(harness(tmp_path / "logs", states))
    try:
        vm = pool.boot(ARCH)  # not warm: boots, saves nothing
        assert vm.boot is not None and not states.exists()
        vm.shell.run(
            "echo in-ram > /root/y && mount | grep -q ' /mnt/disk ' && "
            "dd if=/dev/urandom of=/mnt/disk/y bs=1024 count=512 2>/dev/null && sync"
        ).check()
        digest = vm.shell.run("sha256sum /mnt/disk/y").check().stdout.split()[0]
        cache = BootCache(states)
        saved = cache.save(vm.machine, state_key(vm.machine, pool.profile), pool.profile)
        assert saved is not None and saved.meta["disks"] == ["disk"]
        assert vm.shell.run("echo still-running").stdout == "still-running\n"  # resumed after the save
        vm.shutdown()
        with no_warm_start_warning():
            warm = pool.boot(ARCH, warm=True)
        assert warm.warm is not None and warm.warm.state == saved.key
        assert warm.shell.run("cat /root/y").stdout == "in-ram\n"
        # Drop the guest's page cache: the file is read from the (restored) disk, not from RAM.
        warm.shell.run("sync && echo 3 > /proc/sys/vm/drop_caches").check()
        assert warm.shell.run("sha256sum /mnt/disk/y").check().stdout.split()[0] == digest
        assert warm.shell.run("echo changed > /mnt/disk/y && sync").status == 0
    finally:
        pool.close()
    cache.verify(saved)  # the warm VM wrote to its own overlay, never to the entry's disk layer


# -- 2. a changed machine boots cold ---------------------------------------------------------------------------


def test_a_changed_machine_boots_cold_and_saves_an_entry_of_its_own(origin: Origin, tmp_path: Path) -> None:
    states = copy_states(origin, tmp_path)
    pool = VMPool(harness(tmp_path / "logs", states))
    try:
        with no_warm_start_warning():
            pool.boot(ARCH, warm=True).shutdown()  # the unchanged machine: warm
            more = pool.boot(ARCH, VMOptions(memory=192), warm=True)
            assert more.boot is not None and more.machine.spec.memory == 192
            more.shutdown()
            pool.boot(ARCH, VMOptions(qemu_args=("-rtc", "base=utc")), warm=True).shutdown()
            # Each new machine starts warm from its own entry next time.
            again = pool.boot(ARCH, VMOptions(memory=192), warm=True)
            assert again.warm is not None
            total = guest_number(again, "grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2")
            assert 150_000 < total < 192 * 1024  # KiB: the 192 MiB machine, not the 256 MiB one
    finally:
        pool.close()
    hows = [s.how for s in pool.starts]
    assert hows == ["warm", "cold", "cold", "warm"], pool.starts
    assert len(pool.boots) == 2
    assert pool.starts[0].state == origin.entry.name
    assert pool.starts[1].note == pool.starts[2].note == "no saved state for this machine yet"
    assert pool.starts[3].state == pool.starts[1].state
    keys = {s.state for s in pool.starts}
    assert len(keys) == 3
    assert entry_dirs(states) == sorted(keys)
    cache = BootCache(states)
    for e in cache.entries():
        assert isinstance(e, SavedState)
        cache.verify(e)
    memories = sorted(e.meta["memory"] for e in cache.entries() if isinstance(e, SavedState))
    assert memories == [192, 256, 256]
    argvs = [e.meta["parts"]["argv"] for e in cache.entries() if isinstance(e, SavedState)]
    assert sum("base=utc" in argv for argv in argvs) == 1


def test_the_key_follows_the_content_of_the_kernel(tmp_path: Path) -> None:
    """state_key hashes the files the command line names: a changed kernel is another machine."""
    pool = VMPool(harness(tmp_path / "logs", tmp_path / "states"))
    try:
        spec = pool.spec(ARCH)
        kernel = tmp_path / "vmlinuz"
        shutil.copyfile(spec.files["kernel"], kernel)
        copy = dataclasses.replace(spec, files={**spec.files, "kernel": kernel})

        def key() -> StateKey:
            return state_key(pool.machine(copy), pool.profile)

        before = key()
        assert key() == before  # stable for an unchanged machine (the run's own paths and name left out)
        assert before.parts["files"]["kernel"] == [[str(kernel.resolve()), sha256_file(kernel)]]
        with kernel.open("ab") as f:
            f.write(b"\0")
        after = key()
        assert after.digest != before.digest
        assert after.parts["files"]["kernel"] == [[str(kernel.resolve()), sha256_file(kernel)]]
        assert [k for k in before.parts if before.parts[k] != after.parts[k]] == ["files"]
        assert state_key(pool.machine(spec), pool.profile).digest not in (before.digest, after.digest)
    finally:
        pool.close()


def test_an_entry_made_from_something_else_than_its_name_says_is_refused(origin: Origin, tmp_path: Path) -> None:
    states = copy_states(origin, tmp_path)
    cache = BootCache(states)
    assert cache.lookup(origin_key(origin)) is not None
    assert cache.lookup(StateKey("0" * 64, origin.parts)) is None  # no entry: no error
    meta_path = states / origin.entry.name / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["parts"]["memory"] = 1024
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BadState, match="made from something else than its name says"):
        cache.lookup(origin_key(origin))


# -- 3. a damaged entry ----------------------------------------------------------------------------------------


def truncate(entry: Path) -> None:
    f = entry / "vm.state"
    os.truncate(f, f.stat().st_size // 2)


def corrupt(entry: Path) -> None:
    """Flip 4 KiB in the middle of the state; the size stays."""
    f = entry / "vm.state"
    middle = f.stat().st_size // 2
    with f.open("r+b") as fh:
        fh.seek(middle)
        data = fh.read(4096)
        fh.seek(middle)
        fh.write(bytes(b ^ 0xFF for b in data))


def drop_meta(entry: Path) -> None:
    """What a writer that died before the rename would leave, had it written in place."""
    (entry / "meta.json").unlink()


DAMAGES: list[tuple[Callable[[Path], None], str]] = [
    (truncate, r"vm\.state is \d+ bytes, not \d+ \(truncated or overwritten\)"),
    (corrupt, r"vm\.state does not match its recorded SHA-256 \(corrupted\)"),
    (drop_meta, r"has no meta\.json \(an incomplete entry\)"),
]


@pytest.mark.parametrize(("damage", "message"), DAMAGES, ids=["truncated", "corrupted", "no-meta"])
def test_a_damaged_entry_warns_boots_cold_and_is_replaced(
    origin: Origin, tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    states = copy_states(origin, tmp_path)
    damage(states / origin.entry.name)
    pool = VMPool(harness(tmp_path / "logs", states))
    try:
        with pytest.warns(WarmStartWarning, match=message) as caught:
            vm = pool.get(ARCH)
        warning = one_warning(caught)
        assert "it was removed and the guest booted instead" in warning
        assert [s.how for s in pool.starts] == ["cold"]
        assert len(pool.boots) == 1 and vm.boot is not None and vm.warm is None
        assert re.search(message, pool.starts[0].note)
        assert pool.starts[0].state == origin.entry.name  # saved again under the same key
        assert vm.shell.run("echo up").stdout == "up\n"
    finally:
        pool.close()
    assert entry_dirs(states) == [origin.entry.name]  # no trash, no temporary directory
    fresh = BootCache(states).lookup(origin_key(origin))
    assert fresh is not None  # verified: every file whole and matching its hash
    assert fresh.saved_at > origin.saved_at
    assert (fresh.path / "vm.state").stat().st_size > 0.9 * origin.state_size
    # And the next session starts warm from the new entry.
    pool = VMPool(harness(tmp_path / "logs2", states))
    try:
        with no_warm_start_warning():
            pool.get(ARCH)
        assert [s.how for s in pool.starts] == ["warm"]
    finally:
        pool.close()


# -- 4. a restore that fails -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_leaks")  # the failed QEMU left no state directory or temporary file
def test_a_failed_restore_warns_boots_cold_and_replaces_the_entry(origin: Origin, tmp_path: Path) -> None:
    """An entry whose files match their metadata but whose state QEMU cannot load."""
    states = copy_states(origin, tmp_path)
    entry = states / origin.entry.name
    garbage = os.urandom(1 << 20)
    (entry / "vm.state").write_bytes(garbage)
    meta = json.loads((entry / "meta.json").read_text())
    meta["files"]["vm.state"] = {"size": len(garbage), "sha256": hashlib.sha256(garbage).hexdigest()}
    (entry / "meta.json").write_text(json.dumps(meta))
    assert BootCache(states).lookup(origin_key(origin)) is not None  # verification passes: only QEMU can tell

    pool = VMPool(harness(tmp_path / "logs", states))
    try:
        start = time.monotonic()
        with pytest.warns(WarmStartWarning, match="failed") as caught:
            vm = pool.get(ARCH)
        took = time.monotonic() - start
        warning = one_warning(caught)
        assert f"from saved state {entry} failed" in warning
        assert "the entry was removed and the guest booted instead" in warning
        found = re.search(r"serial log (\S+)\)", warning)
        assert found and found.group(1).endswith(".serial.log") and Path(found.group(1)).parent == tmp_path / "logs"
        assert [s.how for s in pool.starts] == ["cold"] and "failed" in pool.starts[0].note
        assert len(pool.boots) == 1 and vm.boot is not None
        assert vm.shell.run("echo up").stdout == "up\n"
        assert took < 60  # the failed load is noticed at once, not after a timeout
    finally:
        pool.close()
    assert entry_dirs(states) == [origin.entry.name]
    fresh = BootCache(states).lookup(origin_key(origin))
    assert fresh is not None
    assert fresh.meta["files"]["vm.state"]["sha256"] != hashlib.sha256(garbage).hexdigest()
    assert (fresh.path / "vm.state").stat().st_size > 0.9 * origin.state_size


# -- 5. two sessions saving at once ----------------------------------------------------------------------------

RACER = """
import json, os, sys, time
from pathlib import Path
from pytest_minix.guest import bootcache
from pytest_minix.guest.pool import HarnessConfig, VMPool

states, logs, barrier = map(Path, sys.argv[1:4])
original = bootcache.BootCache.save

def save(self, machine, key, profile):
    # Both sessions are booted and about to save: start writing together.
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return original(self, machine, key, profile)

bootcache.BootCache.save = save
pool = VMPool(HarnessConfig(guest="reference", arches=("i386",), accel="tcg", log_dir=logs, boot_cache=states))
try:
    pool.get("i386")
    print("STARTS=" + json.dumps([s.as_dict() for s in pool.starts]))
finally:
    pool.close()
"""


@pytest.mark.usefixtures("no_leaks")
def test_two_sessions_saving_at_once_leave_one_good_entry(private_cache: Path, tmp_path: Path) -> None:
    script = tmp_path / "racer.py"
    script.write_text(textwrap.dedent(RACER))
    states, barrier = tmp_path / "states", tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(states), str(tmp_path / f"logs{i}"), str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:  # timed out: do not leave it (and its QEMU) running
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert len(list(barrier.iterdir())) == 2  # both sessions reached the save
    starts = [json.loads(out.split("STARTS=", 1)[1]) for out, _ in outs]
    assert [[s["how"] for s in st] for st in starts] == [["cold"], ["cold"]]
    (key,) = {st[0]["state"] for st in starts}  # both name the same entry
    # One session's save won; the other found the entry in place when it came to rename its own.
    notes = sorted(st[0].get("note", "") for st in starts)
    assert notes == [
        "no saved state for this machine yet",
        "no saved state for this machine yet; another session saved this machine's state first",
    ]
    assert entry_dirs(states) == [key]  # one entry, no .tmp-* or .trash-* left
    cache = BootCache(states)
    (entry,) = cache.entries()
    assert isinstance(entry, SavedState)
    cache.verify(entry)
    pool = VMPool(harness(tmp_path / "logs", states))
    try:
        with no_warm_start_warning():
            vm = pool.get(ARCH)
        assert [s.how for s in pool.starts] == ["warm"] and pool.starts[0].state == key
        assert vm.shell.run("echo up").stdout == "up\n"
    finally:
        pool.close()


# -- 6. --minix-cold-boot ----------------------------------------------------------------------------------------


def test_cold_boot_option_neither_loads_nor_saves(
    pytester: pytest.Pytester, private_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = make_cache(tmp_path / "cache", private_cache)  # the links lead on to the real guest
    monkeypatch.setenv(CACHE_ENV, str(cache))
    states = cache / "states"
    pytester.makepyfile(test_inner=CHILD_TEST)

    first = pytester.runpytest_subprocess(*CHILD_ARGS)
    first.assert_outcomes(passed=1)
    out = first.stdout.str()
    assert "pytest-minix VMs" in out and "started WARM" not in out
    saved = re.search(r"booted cold in [\d.]+ s; saved as ([0-9a-f]{12}) for later sessions", out)
    assert saved, out
    (key,) = entry_dirs(states)
    assert key.startswith(saved.group(1))
    saved_at = json.loads((states / key / "meta.json").read_text())["saved_at"]

    report = pytester.path / "report.json"
    second = pytester.runpytest_subprocess(*CHILD_ARGS, f"--minix-claims-report={report}")
    second.assert_outcomes(passed=1)
    out = second.stdout.str()
    assert re.search(rf"started WARM from saved state {key[:12]} \(saved [^)]+\) in [\d.]+ s", out), out
    assert "booted cold" not in out
    # The report's session metadata (its "pytest_minix" object) says how the shared VM came up.
    (start,) = json.loads(report.read_text())["pytest_minix"]["vm_starts"]
    assert start["how"] == "warm" and start["state"] == key and start["guest"] == "reference"
    assert "1 of 1 started warm from the boot cache (reference i386)" in report.with_suffix(".md").read_text()

    third = pytester.runpytest_subprocess(*CHILD_ARGS, "--minix-cold-boot")
    third.assert_outcomes(passed=1)
    out = third.stdout.str()
    assert "booted cold in" in out and "the boot cache is off (--minix-cold-boot)" in out
    assert "saved as" not in out and "started WARM" not in out
    assert entry_dirs(states) == [key]
    assert json.loads((states / key / "meta.json").read_text())["saved_at"] == saved_at  # not saved again


# -- 7. the MCP server ---------------------------------------------------------------------------------------------


def test_the_mcp_server_starts_warm_from_the_same_cache(origin: Origin, tmp_path: Path) -> None:
    assert cache_root() / "states" == origin.states  # the server's default boot cache holds the entry
    manager = SessionManager(tmp_path / "logs", accel="tcg")
    try:
        with no_warm_start_warning():
            booted = manager.boot("reference", ARCH)
        assert booted["started"] == "warm"
        assert booted["boot_seconds"] is None and 0 < booted["start_seconds"] < 5.0
        r = manager.run(booted["session"], "test -e /root/x; echo $?")
        assert r["stdout"] == "1\n"  # the saved state, not session A's later writes
    finally:
        manager.close()


# -- 8. pytest-minix states ----------------------------------------------------------------------------------------


def test_states_command_lists_and_prunes(origin: Origin, private_cache: Path, tmp_path: Path) -> None:
    cache = make_cache(tmp_path / "cache", private_cache)
    states = copy_states(origin, cache)
    (states / "half-written").mkdir()  # no meta.json
    env = {**os.environ, CACHE_ENV: str(cache)}

    def states_cli(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest_minix.cli", "states", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    listed = states_cli()
    line = next((ln for ln in listed.splitlines() if ln.startswith(origin.entry.name[:12])), None)
    assert line is not None, listed
    assert "reference i386 (accel tcg, 256 MiB" in line and "STALE" not in line
    assert re.search(r"incomplete or unreadable .*half-written", listed)
    assert f"MiB in {states}" in listed

    pruned = states_cli("--prune")  # the incomplete entry goes, the usable one stays
    assert f"removed {states / 'half-written'}" in pruned and "1 saved state(s) removed" in pruned
    assert entry_dirs(states) == [origin.entry.name]

    everything = states_cli("--prune", "--all")
    assert f"removed {states / origin.entry.name}" in everything and "1 saved state(s) removed" in everything
    assert entry_dirs(states) == []
    assert "no saved VM states" in states_cli()
    assert entry_dirs(origin.states) == [origin.entry.name]  # only the copy went
