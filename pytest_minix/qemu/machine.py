"""One QEMU process: command line, start paused, QMP + console, t0 at ``cont``, shutdown.

Lifecycle modelled on QEMU's own ``python/qemu/machine``: launch with ``-S``, connect
the monitor, resume, and on shutdown ask politely (QMP ``quit``), then SIGTERM, then
SIGKILL. Disk images are never written: every drive is a qcow2 overlay in the VM's
private state directory.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pytest_minix.errors import ConfigError, QemuNotFound, VMError
from pytest_minix.profiles import ArchConfig
from pytest_minix.qemu import migration
from pytest_minix.qemu.accel import KVM_FAILURE_SIGNS
from pytest_minix.qemu.binary import find_qemu
from pytest_minix.qemu.console import Console
from pytest_minix.qemu.qmp import QMP
from pytest_minix.qemu.runtime import Runtime
from pytest_minix.qemu.statedir import StateDir

log = logging.getLogger(__name__)


@dataclass
class MachineSpec:
    """Everything needed to start one VM; ``files`` fills the profile's placeholders."""

    arch: str
    config: ArchConfig
    files: dict[str, str | Path]
    accel: str = "tcg"
    memory: int = 256
    qemu_binary: str | None = None
    boot_args: str = ""
    qemu_args: tuple[str, ...] = ()
    disks: dict[str, Path] = field(default_factory=dict)  # placeholder -> base image (overlaid)
    disk_formats: dict[str, str] = field(default_factory=dict)  # placeholder -> base format if not raw
    network: bool = False
    # SeaBIOS's debug console (I/O port 0x402) on its own socket: its "Booting from ROM"
    # line marks the end of the firmware stage in the boot timeline (x86 only).
    debugcon: bool = True


@dataclass(frozen=True)
class Incoming:
    """A saved VM to start from instead of booting: its state stream and its disks as they were then.

    ``disks``: placeholder -> a qcow2 layer (over the base image) that becomes the new
    overlay's backing file; neither it nor the base image is written.
    """

    state: Path
    disks: dict[str, Path] = field(default_factory=dict)


def make_image(path: Path, size: str) -> None:
    """An empty (sparse) qcow2 image."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise QemuNotFound("qemu-img was not found; install it with `sudo apt-get install qemu-utils`.")
    proc = subprocess.run(
        [qemu_img, "create", "-q", "-f", "qcow2", str(path), size], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise VMError(f"qemu-img could not create {path}: {proc.stderr.strip()}")


def make_overlay(base: Path, overlay: Path, fmt: str = "raw") -> None:
    """A qcow2 overlay over ``base``, so the base image is never written."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise QemuNotFound("qemu-img was not found; install it with `sudo apt-get install qemu-utils`.")
    proc = subprocess.run(
        [qemu_img, "create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", fmt, str(overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise VMError(f"qemu-img could not create an overlay of {base}: {proc.stderr.strip()}")


class Machine:
    """A QEMU process with its monitor and console, in a private directory."""

    def __init__(self, spec: MachineSpec, state: StateDir, name: str, log_dir: Path) -> None:
        self.spec = spec
        self.name = name
        self.state = state
        self.dir = state.vm_dir(name)
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.serial_log = log_dir / f"{name}.serial.log"
        self.qemu_log = log_dir / f"{name}.qemu.log"
        self.qmp_sock = self.dir / "qmp.sock"
        self.console_sock = self.dir / "console.sock"
        self.console = Console(self.console_sock, self.serial_log)
        self.debugcon: Console | None = None
        if spec.debugcon and spec.arch == "i386":
            self.firmware_log = log_dir / f"{name}.firmware.log"
            self.debugcon = Console(self.dir / "debugcon.sock", self.firmware_log, max_lines=2000, head_lines=2000)
        self.qmp = QMP(self.qmp_sock, name)
        self.proc: subprocess.Popen[bytes] | None = None
        self.t0: float | None = None
        self.argv: list[str] = []

    # -- command line -----------------------------------------------------
    def build_argv(self, incoming: Incoming | None = None, *, create: bool = True) -> list[str]:
        """QEMU's command line; with ``create`` (the default) the overlays it names are made too."""
        spec, conf = self.spec, self.spec.config
        files = {k: str(v) for k, v in spec.files.items()}
        for key, base in spec.disks.items():
            overlay = self.dir / f"{key}.qcow2"
            if create and incoming is not None and key in incoming.disks:
                make_overlay(incoming.disks[key], overlay, "qcow2")
            elif create:
                make_overlay(base, overlay, spec.disk_formats.get(key, "raw"))
            files[key] = str(overlay)
        # Where internal snapshots (savevm) keep the VM state: a drive with no device, so the
        # guest sees no new hardware; a live CD has no writable disk to hold it otherwise.
        vmstate = self.dir / "vmstate.qcow2"
        if create:
            make_image(vmstate, "1G")

        def fill(text: str) -> str:
            try:
                return text.format(**files)
            except KeyError as exc:
                raise ConfigError(f"Guest profile uses placeholder {exc} that the harness does not provide.") from None

        qemu = find_qemu(spec.qemu_binary or conf.qemu, spec.arch)
        argv = [qemu, "-name", self.name, "-machine", conf.machine, "-accel", spec.accel]
        if conf.cpu:
            argv += ["-cpu", conf.cpu]
        argv += [
            "-m",
            str(spec.memory),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-S",
            "-chardev",
            f"socket,id=qmp,path={self.qmp_sock},server=on,wait=off",
            "-mon",
            "chardev=qmp,mode=control",
            "-chardev",
            f"socket,id=ser0,path={self.console_sock},server=on,wait=off",
            "-serial",
            "chardev:ser0",
            "-drive",
            f"if=none,id=pm-vmstate,file={vmstate},format=qcow2",
        ]
        if self.debugcon is not None:
            argv += [
                "-chardev",
                f"socket,id=dbg,path={self.debugcon.sock_path},server=on,wait=off",
                "-device",
                "isa-debugcon,iobase=0x402,chardev=dbg",
            ]
        if conf.kernel:
            argv += ["-kernel", fill(conf.kernel)]
        if conf.initrd:
            argv += ["-initrd", fill(conf.initrd)]
        append = " ".join(x for x in (fill(conf.append), spec.boot_args) if x)
        if append:
            argv += ["-append", append]
        # -nodefaults removed every device the profile did not ask for; add back what the guest needs
        # (MINIX prints nothing at all, not even on its serial console, without a display adapter).
        for device in conf.devices:
            argv += ["-device", device]
        argv += [fill(a) for a in conf.args]
        # Guest network is off unless asked for; then user-mode only, no host forwards.
        argv += ["-nic", f"user,model={conf.nic}" if spec.network else "none"]
        argv += list(spec.qemu_args)
        if incoming is not None:
            argv += ["-incoming", "defer"]
        return argv

    def identity_argv(self) -> list[str]:
        """The command line with this run's own paths and name replaced: equal for equal machines."""
        own = str(self.dir)
        argv = self.build_argv(create=False)
        argv[argv.index("-name") + 1] = "<name>"
        return [a.replace(own, "<run>") for a in argv]

    # -- lifecycle --------------------------------------------------------
    def launch(self, incoming: Incoming | None = None) -> None:
        """Start QEMU paused and connect console and monitor (nothing runs yet).

        With ``incoming``, the saved state is loaded before this returns (still paused).
        """
        self.argv = self.build_argv(incoming)
        log.debug("%s: launching %s", self.name, shlex.join(self.argv))
        runtime = Runtime.get()
        with open(self.qemu_log, "wb") as errlog:
            self.proc = runtime.spawn(self.argv, stdout=errlog, stderr=subprocess.STDOUT, cwd=self.dir)
        self.state.record_qemu(self.proc.pid)
        log.info(
            "%s: QEMU pid %d started paused (accel %s), serial log %s",
            self.name,
            self.proc.pid,
            self.spec.accel,
            self.serial_log,
        )
        try:
            self.console.connect(exited=self.exit_reason)
            if self.debugcon is not None:
                self.debugcon.connect(exited=self.exit_reason)
            self.qmp.connect()
        except Exception as exc:  # noqa: BLE001 - any failure here means QEMU did not start
            reason = self.exit_reason() or str(exc)
            self.shutdown()
            raise VMError(f"QEMU did not start: {reason}\nCommand: {' '.join(self.argv)}", self.qemu_log) from None
        if incoming is not None:
            try:
                migration.load(self.qmp, incoming.state, self.exit_reason)
            except VMError as exc:
                self.shutdown()
                raise VMError(f"{exc} (state file {incoming.state})", self.qemu_log) from None

    def save_state(self, into: Path) -> tuple[Path, dict[str, Path]]:
        """Write the VM's state and a copy of each disk overlay into the directory ``into``, then resume.

        Returns the state file and placeholder -> disk layer. The guest is stopped meanwhile
        (its clock with it); QEMU has flushed the overlays when the stream completes.
        """
        state = into / "vm.state"
        migration.save(self.qmp, state, self.exit_reason)
        disks: dict[str, Path] = {}
        try:
            for key in self.spec.disks:
                disks[key] = into / f"disk-{key}.qcow2"
                shutil.copyfile(self.dir / f"{key}.qcow2", disks[key])
        finally:
            self.qmp.execute("cont")  # from QEMU's "postmigrate": disks are reactivated
        return state, disks

    def cont(self) -> float:
        """Resume the VM; the returned host monotonic time is the boot's t0."""
        t0 = time.monotonic()
        self.console.set_t0(t0)
        if self.debugcon is not None:
            self.debugcon.set_t0(t0)
        self.qmp.execute("cont")
        self.t0 = t0
        log.debug("%s: resumed (t0 of the boot timeline)", self.name)
        return t0

    def exit_reason(self) -> str | None:
        """Why QEMU is gone or stopped, or None while it runs normally."""
        if self.proc is None:
            return "QEMU was never started"
        code = self.proc.poll()
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            detail = self.qemu_stderr()
            return f"QEMU {how}" + (f": {detail}" if detail else "")
        if self.spec.accel == "kvm":
            detail = self.qemu_stderr()
            for line in detail.splitlines():
                if any(sign in line for sign in KVM_FAILURE_SIGNS):
                    return f"KVM failed ({line.strip()})"
        now = time.monotonic()
        for ev in self.qmp.events():
            if ev.name == "GUEST_PANICKED":
                return "the guest panicked (QMP GUEST_PANICKED)"
            if ev.name == "SHUTDOWN":
                return f"the guest shut down (QMP SHUTDOWN, {ev.data})"
            # A reset the guest asked for (reboot, triple fault, panic=-1) restarts it from the
            # firmware: the shell and everything in RAM are gone. QEMU emits none at start (-S,
            # cont), and resets of the host's own (loadvm, system_reset) have guest=false. Given
            # a moment first, so a panic printed just before the reset is what gets reported.
            if ev.name == "RESET" and ev.data.get("guest") and now - ev.host_time >= self.RESET_GRACE:
                return f"the guest rebooted (QMP RESET, reason {ev.data.get('reason', 'unknown')})"
        return None

    # Seconds a guest RESET is held back so the console can deliver what the guest printed before it.
    RESET_GRACE = 0.5

    def qemu_stderr(self, limit: int = 2000) -> str:
        try:
            return self.qemu_log.read_text(errors="replace").strip()[-limit:]
        except OSError:
            return ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def shutdown(self, timeout: float = 3.0) -> None:
        """QMP quit, then SIGTERM, then SIGKILL; always reaps QEMU and removes the state dir."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                self.qmp.execute("quit", timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - escalate below
                log.debug("%s: QMP quit failed (%s); escalating to signals", self.name, exc)
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and proc.poll() is None:
                    log.warning(
                        "%s: QEMU pid %d did not stop within %.0f s; sending %s", self.name, proc.pid, timeout, sig.name
                    )
                    proc.send_signal(sig)
                try:
                    proc.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if proc is not None and self.dir.exists():
            log.info("%s: QEMU pid %d stopped, exit status %s", self.name, proc.pid, proc.poll())
        self.qmp.close()
        self.console.close()
        if self.debugcon is not None:
            self.debugcon.close()
        shutil.rmtree(self.dir, ignore_errors=True)
