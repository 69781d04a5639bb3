"""testinfra over the serial shell: the MINIX/busybox mappings with a fake backend, then the real guest.

Also: pytest-testinfra's own ``host`` stays testinfra's (``--hosts=local://`` is the local
machine, no VM), and the guest is reachable by ``minix_host`` and by ``--hosts=minix://ARCH``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import testinfra.backend
import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.modules.file import GNUFile, NetBSDFile

from pytest_minix.errors import ConfigError, HarnessError
from pytest_minix.guest.shell import Result
from pytest_minix.paths import CACHE_ENV, cache_root
from pytest_minix.plugin.testinfra_backend import (
    PROC_ALL,
    PROC_ONE,
    GuestHost,
    LinuxGuestFile,
    MinixBackend,
    MinixFile,
    OutputTruncated,
    SerialShellBackend,
    parse_proc_listing,
    register_backend,
)


class FakeBackend(BaseBackend):  # type: ignore[misc]
    """Answers commands from a table; anything else is 'not found' (127)."""

    NAME = "fake"

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__("fake")
        self.answers = answers
        self.commands: list[str] = []

    def get_encoding(self) -> str:
        return "utf-8"

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        cmd = self.get_command(command, *args)
        self.commands.append(cmd)
        answer = self.answers.get(cmd, (127, "", f"sh: {cmd.split()[0]}: not found\n"))
        rc, out, err = answer if isinstance(answer, tuple) else (0, answer, "")
        return self.result(rc, self.encode(cmd), out, err)


def fake_host(answers: dict[str, Any]) -> GuestHost:
    backend = FakeBackend(answers)
    host = GuestHost(backend)
    backend.set_host(host)
    return host


UNAME = "uname -s; uname -r; uname -m"

# The listing as a live MINIX 3.4 printed it for PROC_ALL (tests/fixtures/minix/live): psinfo
# lines "version type endpoint name state blockedon prio utime stime cycles kipc kcall mem nice
# euid" (minix/fs/procfs/pid.c; no parent), the cmdline, and the "ppid N" line from ps.
MINIX_PROCS = (Path(__file__).parents[1] / "fixtures" / "minix" / "live" / "proc-all.txt").read_text()
MINIX = {
    UNAME: "Minix\n3.4.0\ni386\n",
    "stat -f %Su /etc/passwd": "root\n",
    "stat -f %u /etc/passwd": "0\n",
    "stat -f %Sg /etc/passwd": "operator\n",
    "stat -f %Lp /etc/passwd": "644\n",
    "stat -f %z /etc/passwd": "5\n",
    "test -e /etc/passwd": "",
    "od -An -v -tx1 < /etc/passwd": " 72 6f 6f 74 0a\n",
    PROC_ALL: MINIX_PROCS,
    "id -nu": "root\n",
    "getent passwd root": (1, "", ""),
    "awk -F: -v v=root '$1 == v { print; exit }' /etc/passwd": "root:*:0:0:Charlie &:/root:/bin/sh\n",
}


def test_minix_is_netbsd_to_testinfra() -> None:
    host = fake_host(MINIX)
    info = host.system_info
    assert (info.type, info.distribution, info.release, info.arch) == ("netbsd", "minix", "3.4.0", "i386")
    assert (info.kernel, info.kernel_release) == ("Minix", "3.4.0")
    f = host.file("/etc/passwd")
    assert isinstance(f, MinixFile) and isinstance(f, NetBSDFile)
    assert (f.exists, f.user, f.uid, f.group, f.mode, f.size) == (True, "root", 0, "operator", 0o644, 5)
    assert f.content == b"root\n" and f.content_string == "root\n"
    assert host.backend.commands.count(UNAME) == 1  # probed once per host


def test_minix_processes_from_psinfo() -> None:
    host = fake_host(MINIX)
    procs = {p.pid: p for p in host.process.filter()}
    assert len(procs) == MINIX_PROCS.count("\n@") + 1
    # init, a boot module, has an empty /proc/1/cmdline; it is its own parent in ps.
    assert (procs[1].comm, procs[1].ppid, procs[1].args, procs[1].state) == ("init", 1, "[init]", "S")
    assert (procs[3].comm, procs[3].ppid, procs[3].args) == ("ds", 4, "[ds]")  # a boot module RS adopted
    usr = next(p for p in procs.values() if p.args == "/service/mfs /dev/c0d0p1 /usr -o rw")
    assert (usr.comm, usr.ppid) == ("mfs", 4)
    getty = host.process.get(comm="getty", args="/usr/libexec/getty default ttyc1")
    assert getty.ppid == 1
    login_shell = host.process.get(args="-sh")
    assert (login_shell.comm, login_shell.ppid) == ("sh", 1)  # login exec'd the shell; init is its parent
    assert {p.comm for p in host.process.filter(ppid=1)} >= {"getty", "sh", "update", "cron"}
    with pytest.raises(AttributeError, match="not available"):
        _ = getty.pcpu
    with pytest.raises(ValueError, match="cannot filter on"):
        host.process.filter(user="root")


def test_minix_user_without_getent() -> None:
    user = fake_host(MINIX).user()
    assert (user.name, user.home, user.shell, user.gecos, user.password) == (
        "root",
        "/root",
        "/bin/sh",
        "Charlie &",
        "*",
    )


def test_linux_stat_with_odd_comm_and_kernel_thread() -> None:
    text = (
        "@1\n1 (busybox) S 0 1 1 0 -1 4194560 202 912 0 0 5 48 1 33 20 0 1 0 2 1593344\n/bin/busybox init \n"
        "@42\n42 (a) b (c) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0\nx  y \n"
        "@2\n2 (kthreadd) S 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 3 0\n\n"
        "@7\n"
    )
    procs = parse_proc_listing(text)
    assert [(p["pid"], p["comm"], p["ppid"], p["args"], p["lstart"]) for p in procs] == [
        (1, "busybox", 0, "/bin/busybox init", "2"),
        (42, "a) b (c", 1, "x  y", "777"),
        (2, "kthreadd", 0, "[kthreadd]", "3"),
    ]


def test_busybox_fixups() -> None:
    host = fake_host(
        {
            UNAME: "Linux\n6.1.0\ni686\n",
            "cat /etc/os-release": (1, "", "no such file\n"),
            "cat /etc/redhat-release": (1, "", ""),
            "cat /etc/alpine-release": (1, "", ""),
            "busybox 2>/dev/null | head -n 1": "BusyBox v1.35.0 (Debian) multi-call binary.\n",
            "stat -Lc %U /etc/passwd": "UNKNOWN\n",
            "stat -Lc %u /etc/passwd": "0\n",
            "awk -F: -v i=0 '$3 == i { print $1; exit }' /etc/passwd": "root\n",
            "stat -Lc %G /etc/passwd": "root\n",
            "ls -1 -q -- /tmp": (1, "", "ls: invalid option -- 'q'\n"),
            "ls -1 -- /tmp": "a\nb\n",
        }
    )
    info = host.system_info
    assert (info.type, info.distribution, info.release, info.kernel_release) == ("linux", "busybox", "1.35.0", "6.1.0")
    f = host.file("/etc/passwd")
    assert isinstance(f, LinuxGuestFile) and isinstance(f, GNUFile)
    assert (f.user, f.group) == ("root", "root")
    assert host.file("/tmp").listdir() == ["a", "b"]


class FakeShell:
    def __init__(self, result: Result) -> None:
        self.result = result
        self.calls: list[tuple[str, float]] = []

    def run(self, cmd: str, timeout: float = 60.0) -> Result:
        self.calls.append((cmd, timeout))
        return self.result


class FakeVM:
    def __init__(self, result: Result) -> None:
        self.shell = FakeShell(result)
        self.arch = "i386"
        self.profile = type("P", (), {"name": "minix"})()


def test_backend_runs_in_a_subshell_with_separate_streams() -> None:
    vm = FakeVM(Result("", 3, "café\n", "oops\n", 0.01))
    backend = SerialShellBackend(vm, timeout=9.0)  # type: ignore[arg-type]
    r = backend.run("printf %s", "a b", timeout=2)
    assert vm.shell.calls == [("( printf 'a b'\n)", 2.0)]
    assert (r.rc, r.stdout, r.stderr, r.stdout_bytes) == (3, "café\n", "oops\n", "café\n".encode())
    assert backend.encoding == "utf-8" and len(vm.shell.calls) == 1  # no python probe in the guest
    assert backend.get_pytest_id() == "minix-serial://minix-i386"
    backend.run("true")
    assert vm.shell.calls[-1][1] == 9.0


def test_backend_refuses_truncated_output() -> None:
    backend = SerialShellBackend(FakeVM(Result("", 0, "[dropped]\n", "", 0.01, truncated=True)))  # type: ignore[arg-type]
    with pytest.raises(OutputTruncated):
        backend.run("cat /big")


# -- pytest-testinfra's host is left alone -------------------------------------------------------

LOCAL_TEST = """
import testinfra.host

def test_local(host, request):
    assert request.config.pluginmanager.has_plugin("minix")  # pytest-minix is loaded
    assert type(host) is testinfra.host.Host  # testinfra's, not a GuestHost
    assert host.backend.get_connection_type() == "local"
    assert host.check_output("echo %s", "from-the-host") == "from-the-host"
    assert host.file("/proc/self").exists
"""


@pytest.mark.parametrize("hosts", [("--hosts=local://",), ()], ids=["hosts-local", "no-hosts"])
def test_plain_testinfra_host_stays_local(
    pytester: pytest.Pytester, hosts: tuple[str, ...], session_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not marked qemu: if the plugin booted a VM for ``host``, the QEMU guard would fail this test."""
    monkeypatch.setenv(CACHE_ENV, str(session_cache))  # the built reference guest: a boot would be tried at once
    pytester.makepyfile(test_inner=LOCAL_TEST)
    # With the reference guest (built here) a plugin that took over ``host`` would try to boot it.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--minix-guest=reference", *hosts)
    result.assert_outcomes(passed=1)


URL_COLLECT = """
def test_url(host):
    pass
"""


def test_minix_url_collects_without_booting(pytester: pytest.Pytester) -> None:
    """``--hosts=minix://all`` is two hosts, made at collection; nothing boots (not marked qemu)."""
    pytester.makepyfile(test_inner=URL_COLLECT)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hosts=minix://all", "--collect-only", "-q")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["test_inner.py::test_url[[]minix://arm[]]", "test_inner.py::test_url[[]minix://i386[]]"]
    )


def test_minix_url_with_an_unknown_arch_says_which_exist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=URL_COLLECT)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hosts=minix://sparc")
    assert result.ret != 0
    assert "minix://sparc names no arch of pytest-minix; use minix://i386, minix://arm, minix://all" in (
        result.stdout.str() + result.stderr.str()
    )


def test_backend_is_registered_in_testinfras_table() -> None:
    assert register_backend() is None  # idempotent: the plugin registered it at configure
    assert testinfra.backend.get_backend_class("minix") is MinixBackend
    host = testinfra.host.Host.get_host("minix://arm?timeout=7")
    assert isinstance(host, GuestHost) and isinstance(host.backend, MinixBackend)
    assert (host.backend.arch, host.backend.timeout, host.backend.get_pytest_id()) == ("arm", 7.0, "minix://arm")
    with pytest.raises(HarnessError, match="not bound to a VM pool"):
        host.run("true")  # outside a test that uses it through --hosts: no VM, and no boot


def test_registration_guard(monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester) -> None:
    """A testinfra without the backend table: registration says why, and --hosts=minix:// is a usage error."""
    monkeypatch.delattr(testinfra.backend, "BACKENDS")
    assert "has no backend table" in (register_backend() or "")
    pytester.makepyfile(test_inner=URL_COLLECT)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--hosts=minix://i386")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "the minix:// backend cannot be registered" in result.stderr.str()
    # Another backend already named minix is not replaced.
    monkeypatch.undo()
    monkeypatch.setitem(testinfra.backend.BACKENDS, "minix", "somebody.else.Backend")
    assert "already has a 'minix' backend (somebody.else.Backend)" in (register_backend() or "")
    assert testinfra.backend.BACKENDS["minix"] == "somebody.else.Backend"


class FakePool:
    def __init__(self, vm: Any) -> None:
        self.vm = vm
        self.asked: list[str] = []

    def get(self, arch: str) -> Any:
        self.asked.append(arch)
        return self.vm


def test_minix_backend_runs_on_the_bound_pools_vm() -> None:
    backend = MinixBackend("i386", connection="minix", sudo=False, ssh_config=None)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    assert type(host) is GuestHost  # testinfra's plain Host gets the guest-aware modules
    pool = FakePool(FakeVM(Result("", 0, "Linux\n6.1.0\ni686\n", "", 0.01)))
    backend.bind(pool)  # type: ignore[arg-type]
    assert host.run("uname -s").stdout == "Linux\n6.1.0\ni686\n" and pool.asked == ["i386"]
    assert host.system_info.kernel == "Linux" and "system_info" in vars(host)
    backend.bind(pool)  # type: ignore[arg-type]  # same pool: cached probes kept
    assert "system_info" in vars(host)
    backend.bind(FakePool(pool.vm))  # type: ignore[arg-type]  # a new session's pool: probed again
    assert "system_info" not in vars(host) and host.backend is backend
    with pytest.raises(ConfigError, match="names 2 arches"):
        MinixBackend("all")
    with pytest.raises(ConfigError, match="the timeout is seconds"):
        MinixBackend("arm", timeout="soon")


# -- the real guest ---------------------------------------------------------------


def is_minix(host: GuestHost) -> bool:
    return bool(host.system_info.kernel == "Minix")


def test_minix_host_is_the_guest(minix_host: GuestHost, guest: Any) -> None:
    host = minix_host
    assert isinstance(host, GuestHost) and host.backend.vm is guest
    assert host.backend.get_pytest_id() == f"minix-serial://{guest.profile.name}-{guest.arch}"
    assert host.check_output("uname -s") == guest.profile.uname_s


URL_TEST = """
import testinfra.host
from pytest_minix.plugin.testinfra_backend import GuestHost, MinixBackend

def test_url_host(host, vm_pool):
    assert isinstance(host, GuestHost) and isinstance(host.backend, MinixBackend)
    assert host.backend.vm is vm_pool.get("{arch}")
    assert host.check_output("uname -s") == "Linux"
    assert host.system_info.distribution == "busybox"
    assert host.file("/etc/passwd").contains("root")
    assert host.process.get(pid=1).comm in ("init", "busybox")
    assert host.user().name == "root"
"""


@pytest.fixture(scope="session")
def session_cache() -> Path:
    """The session's cache (its reference guest), read before pytester points HOME elsewhere."""
    return cache_root()


@pytest.mark.qemu
def test_hosts_url_reaches_the_guest(
    pytester: pytest.Pytester, pytestconfig: pytest.Config, session_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pytest --hosts=minix://ARCH``: testinfra's own ``host`` fixture on the session's VM."""
    monkeypatch.setenv(CACHE_ENV, str(session_cache))
    arch = pytestconfig.getoption("minix_arch") or "i386"
    arch = "i386" if arch == "all" else arch
    pytester.makepyfile(test_inner=URL_TEST.replace("{arch}", arch))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--hosts=minix://{arch}", "--minix-guest=reference", "--minix-accel=tcg", "-v"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"test_inner.py::test_url_host[[]minix://{arch}[]]*"])  # testinfra's id


def test_run_streams_status_and_encoding(minix_host: GuestHost) -> None:
    r = minix_host.run("echo hi")
    assert (r.rc, r.stdout, r.stderr) == (0, "hi\n", "")
    r = minix_host.run("echo out; echo err >&2; exit 3")
    assert (r.rc, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert minix_host.check_output("echo %s", "a  b;c") == "a  b;c"  # args are quoted
    assert minix_host.check_output("printf 'caf\\303\\251'") == "café"
    r = minix_host.run_expect([1], "grep -q %s /etc/passwd", "no-such-user-here")
    assert r.rc == 1 and r.failed
    with pytest.raises(AssertionError, match="Unexpected exit code 1"):
        minix_host.check_output("false")
    # A subshell per command: neither cd nor exit reaches the login shell.
    before = minix_host.check_output("pwd")
    assert minix_host.run("cd /proc && exit 7").rc == 7
    assert minix_host.check_output("pwd") == before
    assert minix_host.exists("od") and not minix_host.exists("no-such-command-xyz")


def test_system_info(minix_host: GuestHost, guest: Any) -> None:
    info = minix_host.system_info
    if is_minix(minix_host):
        assert (info.type, info.distribution) == ("netbsd", "minix")
    else:
        assert (info.type, info.distribution, info.kernel) == ("linux", "busybox", "Linux")
        assert info.release.count(".") >= 1
    assert info.arch == minix_host.check_output("uname -m")
    assert info.kernel_release == minix_host.check_output("uname -r")


def test_file_passwd(minix_host: GuestHost) -> None:
    f = minix_host.file("/etc/passwd")
    assert f.exists and f.is_file and not f.is_directory
    assert f.contains("root") and not f.contains("^no-such-user:")
    assert (f.user, f.uid, f.gid, f.mode) == ("root", 0, 0, 0o644)
    assert f.content_string.startswith("root:")
    assert not minix_host.file("/etc/no-such-file").exists


def test_file_written_in_the_guest(minix_host: GuestHost) -> None:
    path, d = "/tmp/pm-testinfra-x", "/tmp/pm-testinfra-d"
    data = b"caf\xc3\xa9\r\nx\x01\n"
    try:
        minix_host.run_expect([0], "printf 'caf\\303\\251\\r\\nx\\001\\n' > %s && chmod 640 %s", path, path)
        f = minix_host.file(path)
        assert f.exists and f.is_file
        assert f.content == data  # exact bytes: \r and \x01 survive
        assert f.content_string == data.decode()
        assert (f.size, f.mode, f.user) == (len(data), 0o640, "root")
        if not is_minix(minix_host):
            assert f.sha256sum == hashlib.sha256(data).hexdigest()
            assert f.md5sum == hashlib.md5(data).hexdigest()
            assert minix_host.file("/bin/ps").is_symlink and minix_host.file("/bin/ps").linked_to == "/bin/busybox"
        minix_host.run_expect([0], "mkdir -p %s && touch %s/b %s/a", d, d, d)
        assert minix_host.file(d).is_directory
        assert sorted(minix_host.file(d).listdir()) == ["a", "b"]
    finally:
        minix_host.run("rm -rf %s %s", path, d)
    assert not minix_host.file(path).exists


def test_processes(minix_host: GuestHost, guest: Any) -> None:
    init = minix_host.process.get(pid=1)
    # Linux reports init's parent as 0; MINIX's ps shows init as its own parent.
    assert init.ppid == (1 if guest.profile.name == "minix" else 0) and "init" in init.args
    # $$ in the subshell is the login shell's pid; its ancestors lead to pid 1.
    shell = minix_host.process.get(pid=int(minix_host.check_output("echo $$")))
    assert shell.comm.endswith("sh")
    procs = {p.pid: p for p in minix_host.process.filter()}
    chain, pid = [], shell.pid
    while pid not in (0, 1) and len(chain) < 10:
        chain.append(procs[pid].comm)
        pid = procs[pid].ppid
    assert pid == 1, chain
    # init's children include the console's getty, or the login it became.
    assert {p.comm for p in minix_host.process.filter(ppid=1)} & {"getty", "login"}
    assert minix_host.process.refresh(1)["pid"] == 1
    assert minix_host.process.refresh(999999) is None
    assert parse_proc_listing(minix_host.check_output(PROC_ONE % 1))[0]["comm"] == init.comm


def test_user(minix_host: GuestHost) -> None:
    root = minix_host.user("root")
    assert root.exists and (root.uid, root.gid) == (0, 0)
    assert (root.home, root.shell) == ("/root", "/bin/sh")
    assert minix_host.user().name == "root"
    assert not minix_host.user("no-such-user-xyz").exists
