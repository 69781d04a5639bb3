"""testinfra on the guest's serial shell: a backend, guest-aware modules, ``minix_host`` and ``--hosts=minix://ARCH``.

The backend runs each testinfra command with ``vm.shell.run`` in a subshell: stdout and
stderr stay separate, the exit status is the command's, the encoding is pinned to UTF-8
(what the console decodes) so no Python is needed in the guest.

``GuestHost`` swaps four testinfra modules for versions that fit the two guests:

* ``system_info``: MINIX (``uname -s`` = ``Minix``) is reported as type ``netbsd``,
  distribution ``minix``, release ``uname -r``, so testinfra picks its NetBSD/BSD
  implementations (``stat -f``, BSD ``user``...) for a NetBSD userland. The reference
  guest is ``linux``, distribution ``busybox``, release the busybox version.
  ``kernel``/``kernel_release`` keep the raw ``uname -s``/``-r``.
* ``file``: ``content`` is read through ``od`` (exact bytes, not the console's decoded
  text). Linux: busybox ``stat`` prints ``UNKNOWN`` for names its static build cannot
  resolve, so ``user``/``group`` then read ``/etc/passwd``/``/etc/group``; ``listdir``
  does without ``ls -q`` (busybox rejects it).
* ``user``: falls back to ``/etc/passwd`` when ``getent`` or ``id -nu`` cannot answer.
* ``process``: testinfra runs ``ps -Aww -o ...``, which neither busybox ``ps`` nor MINIX's
  own ``ps`` accepts; this one reads ``/proc`` (Linux ``stat``, MINIX ``psinfo``, both
  ``cmdline``) and knows ``pid``, ``ppid``, ``comm``, ``args`` and ``state``. ``lstart``
  is an identity token, not a time: Linux's start time in ticks, MINIX's endpoint.

Two ways in, neither touching pytest-testinfra's own ``host`` fixture (``--hosts=local://``,
ssh and the rest keep working beside this plugin):

* the ``minix_host`` fixture: a ``GuestHost`` on the ``guest`` VM, per arch like ``guest``;
* a testinfra backend for ``minix://`` URLs: ``pytest --hosts=minix://i386`` (or ``arm``,
  ``all`` for both; ``?timeout=120`` sets the per-command timeout) gives testinfra's ``host``
  fixture the session's VM of that arch. testinfra makes the backend at collection time;
  it boots nothing then: an autouse fixture binds it to the session's ``vm_pool`` when a
  test uses it, and the VM boots on its first command (or the test skips, like ``guest``,
  when the guest cannot be had here).

testinfra has no public extension point for backends: its table
``testinfra.backend.BACKENDS`` (scheme -> ``"module.Class"``, read by
``get_backend_class``) is module data. ``register_backend`` adds ``minix`` to it at
``pytest_configure`` and checks that ``get_backend_class("minix")`` returns our class, so a
testinfra without that table (or with another ``minix``) is noticed: then ``--hosts=minix://``
is a usage error that says why, and nothing else changes. Written against pytest-testinfra
10.2 (the table has looked like this since testinfra 1.x).
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
import testinfra.backend
import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.modules.file import File, GNUFile, NetBSDFile
from testinfra.modules.process import Process
from testinfra.modules.systeminfo import SystemInfo
from testinfra.modules.user import BSDUser, User

from pytest_minix.errors import ConfigError, HarnessError
from pytest_minix.guest.shell import parse_od
from pytest_minix.plugin.media import need_media
from pytest_minix.profiles import ARCHES, expand_arch

if TYPE_CHECKING:
    from pytest_minix.guest.pool import VMPool
    from pytest_minix.guest.vm import VM

ENCODING = "utf-8"
SCHEME = "minix"  # --hosts=minix://i386
PROCESS_FIELDS = ("pid", "ppid", "comm", "args", "state")

# One record per process: "@<pid>", the stat (Linux) or psinfo (MINIX) line, then the
# NUL-separated cmdline as one line; on MINIX a "ppid N" line from ps(1), because MINIX
# 3.4's psinfo has no parent (minix/fs/procfs/pid.c). Short: MINIX's tty queue holds ~250 characters.
_PROC_LOOP = (
    "cat $d/stat $d/psinfo $d/cmdline 2>/dev/null | tr '\\000' ' '; echo; "
    "if [ -f $d/psinfo ]; then echo ppid $(ps -o ppid= -p ${d#/proc/}); fi"
)
PROC_ALL = f'for d in /proc/[0-9]*; do echo "@${{d#/proc/}}"; {_PROC_LOOP}; done'
PROC_ONE = f'd=/proc/%s; [ -d $d ] && echo "@${{d#/proc/}}" && {{ {_PROC_LOOP}; }}'


class OutputTruncated(HarnessError):
    """The console dropped part of a command's output: testinfra would parse a wrong answer."""


class SerialShellBackend(BaseBackend):  # type: ignore[misc]
    """Runs testinfra's commands on a VM's serial root shell."""

    NAME = "minix-serial"

    def __init__(self, vm: VM, timeout: float = 60.0) -> None:
        super().__init__(f"{vm.profile.name}-{vm.arch}")
        self._vm = vm
        self.timeout = timeout

    @property
    def vm(self) -> VM:
        """The VM the commands run on."""
        return self._vm

    def get_encoding(self) -> str:
        # BaseBackend asks a guest Python; the console decodes UTF-8 whatever the guest says.
        return ENCODING

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        """Run ``command % quoted(args)``; ``timeout=`` (seconds) overrides the backend's."""
        cmd = self.get_command(command, *args)
        # A subshell, as a fresh ssh session would be: cd, export or exit must not reach
        # the harness's login shell (an exit would log it out).
        r = self.vm.shell.run(f"( {cmd}\n)", timeout=float(kwargs.get("timeout", self.timeout)))
        if r.truncated:
            raise OutputTruncated(f"The console dropped output of {cmd!r}; read large outputs with vm.shell.get().")
        return self.result(r.status, self.encode(cmd), r.stdout, r.stderr)


class GuestSystemInfo(SystemInfo):  # type: ignore[misc]
    """System info with MINIX mapped to NetBSD and busybox as the Linux distribution."""

    @functools.cached_property
    def sysinfo(self) -> dict[str, str | None]:
        lines = self.check_output("uname -s; uname -r; uname -m").splitlines()
        kernel, release, arch = [*lines, "", "", ""][:3]
        info: dict[str, str | None] = {
            "type": kernel.lower(),
            "distribution": None,
            "codename": None,
            "release": None,
            "arch": arch,
            "kernel": kernel,
            "kernel_release": release,
        }
        if kernel == "Minix":
            # NetBSD userland (stat -f, id, pkgin): testinfra's NetBSD modules fit.
            info.update(type="netbsd", distribution="minix", release=release)
        elif kernel == "Linux":
            info.update(self._get_linux_sysinfo())
            if info["distribution"] is None:
                m = re.match(r"BusyBox v(\S+)", self.run("busybox 2>/dev/null | head -n 1").stdout)
                if m:
                    info.update(distribution="busybox", release=m.group(1))
        else:
            info.update(distribution=info["type"], release=release)
        return info

    @property
    def kernel(self) -> str | None:
        """Raw ``uname -s`` (``Minix``, ``Linux``)."""
        return self.sysinfo["kernel"]

    @property
    def kernel_release(self) -> str | None:
        """Raw ``uname -r``."""
        return self.sysinfo["kernel_release"]


class _ExactContent:
    """File content as exact bytes: ``od`` hex, immune to the console's decoding and line-end normalisation."""

    path: str
    run: Any
    _host: Any

    def _get_content(self, decode: bool) -> bytes | str:
        out = self.run("od -An -v -tx1 < %s", self.path)
        if out.rc != 0:
            raise RuntimeError(f"Unexpected output {out}")
        data = parse_od(out.stdout)
        return self._host.backend.decode(data) if decode else data


class LinuxGuestFile(_ExactContent, GNUFile):  # type: ignore[misc]
    """GNU file module that also copes with busybox."""

    def _name(self, fmt: str, id_fmt: str, db: str) -> str:
        name: str = self.check_output(f"stat -Lc %%{fmt} %s", self.path)
        if name != "UNKNOWN":
            return name
        # busybox's own getpwuid() (static builds up to 1.35) misses entries with an empty password
        # field, as in "root::0:0:..."; the reference guest avoids that, other guests may not.
        ident = self.check_output(f"stat -Lc %%{id_fmt} %s", self.path)
        found: str = self.check_output("awk -F: -v i=%s '$3 == i { print $1; exit }' %s", ident, db)
        return found or name

    @property
    def user(self) -> str:
        return self._name("U", "u", "/etc/passwd")

    @property
    def group(self) -> str:
        return self._name("G", "g", "/etc/group")

    def listdir(self) -> list[str]:
        out = self.run_test("ls -1 -q -- %s", self.path)
        if out.rc != 0:  # busybox has no -q
            out = self.run_test("ls -1 -- %s", self.path)
        if out.rc != 0:
            raise RuntimeError(f"Unexpected output {out}")
        return out.stdout.splitlines()  # type: ignore[no-any-return]


class MinixFile(_ExactContent, NetBSDFile):  # type: ignore[misc]
    """NetBSD file module (``stat -f``) for MINIX."""


class GuestFile(File):  # type: ignore[misc]
    """Picks the file module for the guest's ``system_info.type``."""

    @classmethod
    def get_module_class(cls, host: testinfra.host.Host) -> type[File]:
        kind = host.system_info.type
        if kind == "linux":
            return LinuxGuestFile
        if kind == "netbsd":
            return MinixFile
        return super().get_module_class(host)  # type: ignore[no-any-return]


class _PasswdFallback:
    """User fields from ``/etc/passwd`` where ``getent`` is missing (busybox, minimal MINIX)."""

    _name: str | None
    run: Any
    check_output: Any

    @property
    def name(self) -> str:
        if self._name is None:
            r = self.run("id -nu")
            self._name = r.stdout.strip() if r.rc == 0 else self._passwd_by("$3", self.check_output("id -u"))[0]
        return self._name

    def _passwd_by(self, field: str, value: str) -> list[str]:
        line: str = self.check_output(f"awk -F: -v v=%s '{field} == v {{ print; exit }}' /etc/passwd", value)
        if not line:
            raise RuntimeError(f"no /etc/passwd entry with {field} = {value!r}")
        return line.split(":")

    def _passwd(self) -> list[str]:
        r = self.run("getent passwd %s", self.name)
        return r.stdout.strip().split(":") if r.rc == 0 else self._passwd_by("$1", self.name)

    @property
    def home(self) -> str:
        return self._passwd()[5]

    @property
    def shell(self) -> str:
        return self._passwd()[6]

    @property
    def gecos(self) -> str:
        return self._passwd()[4]


class LinuxGuestUser(_PasswdFallback, User):  # type: ignore[misc]
    """Linux user module with the ``/etc/passwd`` fallback."""


class MinixUser(_PasswdFallback, BSDUser):  # type: ignore[misc]
    """BSD user module with the ``/etc/passwd`` fallback."""

    @property
    def password(self) -> str:
        return self._passwd()[1]


class GuestUser(User):  # type: ignore[misc]
    """Picks the user module for the guest's ``system_info.type``."""

    @classmethod
    def get_module_class(cls, host: testinfra.host.Host) -> type[User]:
        return MinixUser if host.system_info.type.endswith("bsd") else LinuxGuestUser


def _parse_proc_record(pid: int, lines: list[str]) -> dict[str, Any] | None:
    """One process from its stat/psinfo line and cmdline; None if it vanished meanwhile."""
    if not lines or not lines[0].strip():
        return None
    ppid_line = re.fullmatch(r"ppid (-?\d+)", lines[-1].strip()) if len(lines) > 1 else None
    if ppid_line:
        lines = lines[:-1]
    head, args = lines[0], " ".join(lines[1:]).strip()
    # Linux: "pid (comm) state ppid ...", comm may hold spaces and parentheses: match to the last ")".
    m = re.fullmatch(r"(\d+) \((.*)\) (\S) (-?\d+)(.*)", head)
    if m and int(m.group(1)) == pid:
        comm, state, ppid = m.group(2), m.group(3), int(m.group(4))
        rest = m.group(5).split()
        lstart = rest[17] if len(rest) > 17 else ""  # field 22: start time in ticks
    else:
        # MINIX psinfo: version type endpoint name state ... (minix/fs/procfs/pid.c pid_psinfo());
        # the parent comes from ps on the record's own line.
        f = head.split()
        if len(f) < 5 or not f[0].isdigit() or f[1] not in ("T", "S", "U"):
            return None
        comm, state, lstart = f[3], f[4], f[2]  # the endpoint changes when a slot is reused
        ppid = int(ppid_line.group(1)) if ppid_line else 0
    return {"pid": pid, "ppid": ppid, "comm": comm, "args": args or f"[{comm}]", "state": state, "lstart": lstart}


def parse_proc_listing(text: str) -> list[dict[str, Any]]:
    """Processes from the output of ``PROC_ALL``/``PROC_ONE``."""
    procs: list[dict[str, Any]] = []
    pid: int | None = None
    lines: list[str] = []
    for line in [*text.splitlines(), "@"]:
        m = re.fullmatch(r"@(\d*)", line)
        if m is None:
            lines.append(line)
            continue
        if pid is not None and (proc := _parse_record_safe(pid, lines)) is not None:
            procs.append(proc)
        pid, lines = (int(m.group(1)) if m.group(1) else None), []
    return procs


def _parse_record_safe(pid: int, lines: list[str]) -> dict[str, Any] | None:
    try:
        return _parse_proc_record(pid, lines)
    except (ValueError, IndexError):
        return None  # a half-written record of a process that exited mid-read


class GuestProcess(Process):  # type: ignore[misc]
    """Processes from ``/proc``, on busybox Linux and MINIX alike.

    >>> host.process.get(pid=1).comm
    """

    def _get_processes(self, **filters: Any) -> list[dict[str, Any]]:
        unknown = set(filters) - set(PROCESS_FIELDS)
        if unknown:
            raise ValueError(f"cannot filter on {sorted(unknown)}: known fields are {', '.join(PROCESS_FIELDS)}")
        return parse_proc_listing(self.check_output(PROC_ALL))

    def _get_process_attribute_by_pid(self, pid: int, name: str) -> dict[str, Any]:
        # Every known field is already in the listing: only unknown names get here.
        raise AttributeError(f"process field {name!r} is not available here; known: {', '.join(PROCESS_FIELDS)}")

    def refresh(self, pid: int) -> dict[str, Any] | None:
        """The current fields of ``pid``, or None if it no longer exists."""
        procs = parse_proc_listing(self.run(PROC_ONE % int(pid)).stdout)
        return procs[0] if procs else None

    @classmethod
    def get_module_class(cls, host: testinfra.host.Host) -> type[Process]:
        return cls


class GuestHost(testinfra.host.Host):  # type: ignore[misc]
    """A testinfra Host whose system_info, file, user and process modules fit the guests."""

    MODULES: ClassVar[dict[str, Any]] = {
        "system_info": GuestSystemInfo,
        "file": GuestFile,
        "user": GuestUser,
        "process": GuestProcess,
    }

    def __getattr__(self, name: str) -> Any:
        module = self.MODULES.get(name)
        if module is None:
            return super().__getattr__(name)
        obj = module.get_module(self)
        setattr(self, name, obj)  # cached like testinfra's own modules
        return obj


def guest_host(vm: VM, timeout: float = 60.0) -> GuestHost:
    """A testinfra Host on ``vm``."""
    backend = SerialShellBackend(vm, timeout)
    host = GuestHost(backend)
    backend.set_host(host)
    return host


class MinixBackend(SerialShellBackend):
    """testinfra backend for ``minix://ARCH`` URLs: the session's VM of that arch, booted on first use.

    testinfra constructs it at collection (``klass(host, **kwargs)``, kwargs from the URL's
    query and its own options); ``bind`` gives it the session's VM pool before a test runs.
    """

    NAME = SCHEME

    def __init__(self, hostname: str, *args: Any, timeout: str | float | None = None, **kwargs: Any) -> None:
        BaseBackend.__init__(self, hostname, *args, **kwargs)
        arches = self.get_hosts(hostname)
        if len(arches) != 1:
            raise ConfigError(
                f"{SCHEME}://{hostname} names {len(arches)} arches; a host is one of {', '.join(ARCHES)}."
            )
        self.arch = arches[0]
        try:
            self.timeout = float(timeout) if timeout not in (None, "") else 60.0
        except (TypeError, ValueError):
            raise ConfigError(f"{SCHEME}://{hostname}?timeout={timeout}: the timeout is seconds, e.g. 120.") from None
        self._pool: VMPool | None = None

    @classmethod
    def get_hosts(cls, host: str | None, **kwargs: Any) -> list[str]:
        """``i386``, ``arm``, or ``all`` for both."""
        if host not in (*ARCHES, "all"):
            urls = ", ".join(f"{SCHEME}://{a}" for a in (*ARCHES, "all"))
            raise ConfigError(f"{SCHEME}://{host or ''} names no arch of pytest-minix; use {urls}.")
        return list(expand_arch(host))

    def bind(self, pool: VMPool) -> None:
        """Run on ``pool``'s VM from now on (a new session's pool: the host's cached probes are dropped)."""
        if pool is self._pool:
            return
        self._pool = pool
        if self._host is not None:
            for name in [n for n in vars(self._host) if n != "backend"]:
                delattr(self._host, name)  # system_info, modules, has_command_v: probed again

    @property
    def vm(self) -> VM:
        if self._pool is None:
            raise HarnessError(
                f"{SCHEME}://{self.hostname} is not bound to a VM pool: use it through pytest-testinfra's "
                f"`host` fixture with --hosts={SCHEME}://{self.hostname} (or the minix_host fixture)."
            )
        return self._pool.get(self.arch)

    def set_host(self, host: testinfra.host.Host) -> None:
        # testinfra makes a plain Host for every --hosts backend. GuestHost is a subclass with no
        # state of its own (only its module table), so the Host becomes one: host.file,
        # host.process, host.user and host.system_info then fit the guest.
        if type(host) is testinfra.host.Host:
            host.__class__ = GuestHost
        super().set_host(host)


def _testinfra_version() -> str:
    try:
        return importlib.metadata.version("pytest-testinfra")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def register_backend() -> str | None:
    """Put ``minix`` in testinfra's backend table; None when done, else why it cannot be."""
    table = getattr(testinfra.backend, "BACKENDS", None)
    lookup = getattr(testinfra.backend, "get_backend_class", None)
    where = f"pytest-testinfra {_testinfra_version()}"
    if not isinstance(table, dict) or not callable(lookup):
        return f"{where} has no backend table (testinfra.backend.BACKENDS and get_backend_class)"
    path = f"{MinixBackend.__module__}.{MinixBackend.__qualname__}"
    if table.get(SCHEME, path) != path:
        return f"{where} already has a {SCHEME!r} backend ({table[SCHEME]})"
    table[SCHEME] = path
    try:
        found = lookup(SCHEME)
    except Exception as exc:  # noqa: BLE001 - any failure means the table works differently
        found = exc
    if found is not MinixBackend:
        del table[SCHEME]
        return f"{where} does not resolve backends through its table as expected (got {found!r})"
    return None


def pytest_configure(config: pytest.Config) -> None:
    problem = register_backend()
    hosts = str(config.getoption("hosts", None) or "")
    if problem is not None and f"{SCHEME}://" in hosts:
        raise pytest.UsageError(
            f"--hosts={hosts}: the {SCHEME}:// backend cannot be registered: {problem}. "
            "Use the minix_host fixture instead, or pytest-testinfra 10."
        )


@pytest.fixture(autouse=True)
def _minix_testinfra_url_host(request: pytest.FixtureRequest) -> None:
    """Binds a ``--hosts=minix://ARCH`` host of pytest-testinfra to the session's VM pool.

    Only tests parametrized with such a host request ``vm_pool``; every other test (a
    ``local://`` host included) is left alone and boots nothing.
    """
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    backend = getattr(params.get("_testinfra_host"), "backend", None)
    if not isinstance(backend, MinixBackend):
        return
    pool: VMPool = request.getfixturevalue("vm_pool")
    need_media(request, pool, backend.arch)
    backend.bind(pool)


@pytest.fixture(scope="session")
def _minix_hosts() -> dict[int, GuestHost]:
    """One Host per VM of the session, so system_info is probed once per boot."""
    return {}


@pytest.fixture
def minix_host(guest: VM, _minix_hosts: dict[int, GuestHost]) -> GuestHost:
    """testinfra ``Host`` on the guest VM (per arch, like ``guest``)."""
    host = _minix_hosts.get(id(guest))
    if host is None or host.backend.vm is not guest:  # a rebooted VM is a new object
        host = _minix_hosts[id(guest)] = guest_host(guest)
    return host
