"""Private per-session state directories (0700) for QMP and console sockets.

Each session owns ``<runtime>/pytest-minix-<uid>/<pid>-<random>/`` with an ``owner``
file holding its PID. A session killed by SIGKILL cannot clean up; the next session
sweeps directories whose owner PID is gone, killing any QEMU recorded there first.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

OWNER = "owner"
QEMU_PIDS = "qemu.pids"


def runtime_root() -> Path:
    """The per-user parent directory, created 0700 and checked to be ours."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    root = base / f"pytest-minix-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    st = root.lstat()
    if st.st_uid != os.getuid() or (st.st_mode & 0o077) or root.is_symlink():
        raise PermissionError(
            f"{root} is not a private directory owned by you (mode {oct(st.st_mode & 0o777)}); "
            "remove it or set XDG_RUNTIME_DIR to a private directory."
        )
    return root


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def sweep(root: Path | None = None) -> list[Path]:
    """Remove state directories whose owner process is gone; return what was removed."""
    root = root or runtime_root()
    removed: list[Path] = []
    for d in root.iterdir():
        owner = d / OWNER
        try:
            pid = int(owner.read_text().strip())
        except (OSError, ValueError):
            continue  # being created right now, or not ours
        if _pid_alive(pid):
            continue
        pids = d / QEMU_PIDS
        if pids.exists():
            for line in pids.read_text().split():
                qpid = int(line)
                # Kill only a process whose command line names this directory: the PID
                # may have been reused by something unrelated.
                if _pid_alive(qpid) and str(d).encode() in _pid_cmdline(qpid):
                    os.kill(qpid, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


class StateDir:
    """This session's private directory; one subdirectory per VM."""

    def __init__(self) -> None:
        root = runtime_root()
        sweep(root)
        self.path = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
        os.chmod(self.path, 0o700)
        (self.path / OWNER).write_text(str(os.getpid()))

    def vm_dir(self, name: str) -> Path:
        d = self.path / name
        d.mkdir(mode=0o700)
        return d

    def record_qemu(self, pid: int) -> None:
        with open(self.path / QEMU_PIDS, "a") as f:
            f.write(f"{pid}\n")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
