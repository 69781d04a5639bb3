"""Guest profiles: plain data (``vm/<name>.toml``) saying how to boot and drive a guest."""

from __future__ import annotations

import datetime
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_minix.errors import ConfigError
from pytest_minix.paths import vm_dir

ARCHES = ("i386", "arm")


def expand_arch(value: str, option: str = "--arch") -> tuple[str, ...]:
    """The arches an ``--arch`` value names: one of :data:`ARCHES`, or ``all`` for every one."""
    if value == "all":
        return ARCHES
    if value not in ARCHES:
        raise ConfigError(f"{option}={value!r} is not supported; use one of {', '.join(ARCHES)} or all.")
    return (value,)


@dataclass(frozen=True)
class Marker:
    """A boot milestone: the first console line matching ``regex``."""

    name: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class ArchConfig:
    """How to start QEMU for one arch; strings may hold ``{kernel}``-style placeholders."""

    arch: str
    qemu: str
    machine: str
    cpu: str
    kernel: str
    initrd: str
    append: str
    args: tuple[str, ...]
    kvm_capable_hosts: tuple[str, ...]
    nic: str = "virtio-net-pci"  # NIC model for --minix-network
    machine_hint: str = ""  # said when the QEMU binary lacks ``machine``: where to get one that has it
    # Devices the guest needs beyond -nodefaults (``-device`` values, e.g. MINIX's VGA adapter).
    devices: tuple[str, ...] = ()
    variants: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)

    def variant(self, name: str) -> ArchConfig:
        """This config with a named variant's keys (e.g. ``disk``: boot from a disk image) applied."""
        if not name:
            return self
        try:
            over = self.variants[name]
        except KeyError:
            raise ConfigError(
                f"The {self.arch} guest definition has no boot variant {name!r} "
                f"(it has: {', '.join(sorted(self.variants)) or 'none'})."
            ) from None
        if "args" in over:
            over = {**over, "args": tuple(over["args"])}
        return replace(self, **over)


@dataclass(frozen=True)
class Login:
    prompt: re.Pattern[str]
    user: str
    password: str
    password_prompt: re.Pattern[str]
    shell_prompt: re.Pattern[str]
    # Console lines that show the login shell has ended before getty's next prompt appears.
    ended: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True)
class GuestProfile:
    """Everything the harness needs to know about one kind of guest."""

    name: str
    description: str
    artifacts: str
    boot_timeout: float
    first_output_timeout: float
    memory: int
    login: Login
    shell_setup: str
    uname_s: str
    checksum: str
    input_max: int
    panic_patterns: tuple[re.Pattern[str], ...]
    noise_patterns: tuple[re.Pattern[str], ...]
    markers: tuple[Marker, ...]
    arches: dict[str, ArchConfig] = field(default_factory=dict)
    source: Path | None = None
    # Seconds without console output, once the guest has started printing, after which a boot
    # that has not reached its login prompt is given up as stalled (None: only boot_timeout).
    boot_stall_timeout: float | None = None
    # A command that sets the guest's clock, with {epoch} (UTC seconds) or {utc} (a datetime,
    # e.g. {utc:%Y%m%d%H%M.%S}); run after a VM starts from a saved state ("" = leave it).
    clock_set: str = ""

    def arch(self, arch: str) -> ArchConfig:
        """The arch's QEMU settings, or a ConfigError listing the valid arches."""
        try:
            return self.arches[arch]
        except KeyError:
            raise ConfigError(
                f"Guest {self.name!r} has no arch {arch!r}; it supports "
                f"{', '.join(sorted(self.arches))}. Pass one of those with --arch."
            ) from None


def available_guests() -> list[str]:
    """Names of the guest profiles shipped in ``vm/``."""
    return sorted(p.stem for p in vm_dir().glob("*.toml"))


def load_profile(name: str) -> GuestProfile:
    """Load ``vm/<name>.toml``; unknown names get an error listing the valid ones."""
    path = vm_dir() / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(
            f"Unknown guest {name!r}. Valid guests: {', '.join(available_guests())}. "
            "Pass one of those with --minix-guest."
        )
    return parse_profile(path)


def _regex(path: Path, key: str, text: Any) -> re.Pattern[str]:
    if not isinstance(text, str):
        raise ConfigError(f"{path}: {key} must be a string regex, got {text!r}.")
    try:
        return re.compile(text, re.MULTILINE)
    except re.error as exc:
        raise ConfigError(f"{path}: {key} is not a valid regex ({exc}): {text!r}.") from None


def _regexes(path: Path, key: str, value: Any) -> tuple[re.Pattern[str], ...]:
    """A list of regexes (``panic_patterns = ['...', '...']``); a bare string is refused, not split into letters."""
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{path}: {key} must be a list of string regexes, e.g. {key.split('.')[-1]} = ['^panic: '].")
    return tuple(_regex(path, f"{key}[{i}]", p) for i, p in enumerate(value))


TOP_KEYS = {
    "name",
    "description",
    "artifacts",
    "boot_timeout",
    "first_output_timeout",
    "memory",
    "login",
    "shell",
    "panic_patterns",
    "noise_patterns",
    "markers",
    "arch",
    "boot_stall_timeout",
}
LOGIN_KEYS = {"prompt", "user", "password", "password_prompt", "shell_prompt", "ended"}
SHELL_KEYS = {"kind", "setup", "uname_s", "checksum", "input_max", "clock_set"}
ARCH_KEYS = {
    "qemu",
    "machine",
    "cpu",
    "kernel",
    "initrd",
    "append",
    "args",
    "kvm_capable_hosts",
    "nic",
    "machine_hint",
    "variants",
    "devices",
}
VARIANT_KEYS = {"kernel", "initrd", "append", "args"}


def _known(path: Path, where: str, table: dict[str, Any], keys: set[str]) -> None:
    """Unknown keys are errors: a key under the wrong [table] would otherwise vanish."""
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(where + k for k in unknown)}; valid keys here: "
            f"{', '.join(sorted(keys))}. (A top-level key placed after a [table] header belongs to that table.)"
        )


def _clock_set(path: Path, template: Any) -> str:
    if not isinstance(template, str):
        raise ConfigError(f"{path}: shell.clock_set must be a string, got {template!r}.")
    try:
        template.format(epoch=0, utc=datetime.datetime.fromtimestamp(0, datetime.UTC))
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"{path}: shell.clock_set {template!r} is not a valid template ({exc}); use {{epoch}} or "
            '{utc:%Y%m%d%H%M.%S}, e.g. "date -u -s @{epoch}".'
        ) from None
    return template


def _checksum(path: Path, tool: Any) -> str:
    if tool not in ("cksum", "sha256sum"):
        raise ConfigError(f"{path}: shell.checksum must be 'cksum' or 'sha256sum', got {tool!r}.")
    return str(tool)


def _devices(path: Path, arch: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(d, str) and d for d in value):
        raise ConfigError(
            f'{path}: arch.{arch}.devices must be a list of QEMU -device values, e.g. devices = ["VGA"]; got {value!r}.'
        )
    return tuple(value)


def _seconds(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{path}: {key} must be a positive number of seconds, e.g. {key} = 120.0; got {value!r}.")
    return float(value)


def parse_profile(path: Path) -> GuestProfile:
    """Parse one profile file, with errors that name the file and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the file's syntax.") from None

    def need(table: dict[str, Any], key: str, where: str = "") -> Any:
        if key not in table:
            raise ConfigError(f"{path}: missing key '{where}{key}'; see vm/reference.toml for the format.")
        return table[key]

    _known(path, "", data, TOP_KEYS)
    login = need(data, "login")
    _known(path, "login.", login, LOGIN_KEYS)
    shell = data.get("shell", {})
    _known(path, "shell.", shell, SHELL_KEYS)
    arches: dict[str, ArchConfig] = {}
    for arch, conf in need(data, "arch").items():
        if arch not in ARCHES:
            raise ConfigError(f"{path}: unknown arch {arch!r} in [arch]; valid arches: {', '.join(ARCHES)}.")
        _known(path, f"arch.{arch}.", conf, ARCH_KEYS)
        variants = conf.get("variants", {})
        for vname, vconf in variants.items():
            _known(path, f"arch.{arch}.variants.{vname}.", vconf, VARIANT_KEYS)
        arches[arch] = ArchConfig(
            arch=arch,
            qemu=need(conf, "qemu", f"arch.{arch}."),
            machine=need(conf, "machine", f"arch.{arch}."),
            cpu=conf.get("cpu", ""),
            kernel=conf.get("kernel", ""),
            initrd=conf.get("initrd", ""),
            append=conf.get("append", ""),
            args=tuple(conf.get("args", ())),
            kvm_capable_hosts=tuple(conf.get("kvm_capable_hosts", ())),
            nic=conf.get("nic", "virtio-net-pci"),
            machine_hint=conf.get("machine_hint", ""),
            devices=_devices(path, arch, conf.get("devices", [])),
            variants=dict(variants),
        )
    return GuestProfile(
        name=need(data, "name"),
        description=data.get("description", ""),
        artifacts=data.get("artifacts", need(data, "name")),
        boot_timeout=float(data.get("boot_timeout", 120.0)),
        first_output_timeout=float(data.get("first_output_timeout", 30.0)),
        memory=int(data.get("memory", 256)),
        login=Login(
            prompt=_regex(path, "login.prompt", need(login, "prompt", "login.")),
            user=need(login, "user", "login."),
            password=login.get("password", ""),
            password_prompt=_regex(path, "login.password_prompt", login.get("password_prompt", "Password: ?$")),
            shell_prompt=_regex(path, "login.shell_prompt", need(login, "shell_prompt", "login.")),
            ended=_regexes(path, "login.ended", login.get("ended", [])),
        ),
        shell_setup=shell.get("setup", "stty -echo"),
        uname_s=shell.get("uname_s", ""),
        checksum=_checksum(path, shell.get("checksum", "cksum")),
        input_max=int(shell.get("input_max", 200)),
        clock_set=_clock_set(path, shell.get("clock_set", "")),
        panic_patterns=_regexes(path, "panic_patterns", data.get("panic_patterns", [])),
        noise_patterns=_regexes(path, "noise_patterns", data.get("noise_patterns", [])),
        markers=tuple(
            Marker(need(m, "name", "markers."), _regex(path, "markers.regex", need(m, "regex", "markers.")))
            for m in data.get("markers", ())
        ),
        arches=arches,
        source=path,
        boot_stall_timeout=(
            _seconds(path, "boot_stall_timeout", data["boot_stall_timeout"]) if "boot_stall_timeout" in data else None
        ),
    )
