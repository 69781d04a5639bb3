"""Build the reference guest: a Debian bookworm kernel, a busybox initramfs and an ext2 disk.

The guest exists so the harness can be tested against a known-good Linux before it
is pointed at MINIX: it boots to a ``login:`` prompt on the serial console, lets
``root`` in without a password and mounts its disk at ``/mnt/disk``.

Artifacts live in ``<cache>/reference/<arch>/`` with a JSON manifest recording the
packages used and the sha256 of every artifact. A build happens in a temporary
directory beside it and is renamed into place, so a killed build never leaves a
half-built guest that passes for a good one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import re
import secrets
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from pytest_minix import paths
from pytest_minix.errors import BuildError
from pytest_minix.media.aptfetch import PrivateApt
from pytest_minix.media.images import sha256_file
from pytest_minix.media.initramfs import CpioWriter
from pytest_minix.profiles import ARCHES

#: Bump when the build recipe changes, so caches made by older recipes are rebuilt.
#: (Changes to the files in vm/reference need no bump: their hash is part of the key.)
#: 2: /etc/shadow installed (root's empty password moved there from /etc/passwd).
BUILDER_VERSION = "2"
DISK_SIZE = "16M"
# A fixed filesystem UUID keeps the disk image stable across rebuilds.
DISK_UUID = "5eed0000-7e57-4d1e-8000-000000000001"

MANIFEST = "manifest.json"
KERNEL = "vmlinuz"
INITRD = "initrd.gz"
DISK = "disk.img"

# Applets /init runs before `busybox --install -s` has made the rest, plus the ones
# the login path needs; everything else is linked at boot time.
_APPLETS = {
    "bin": [
        "sh",
        "ash",
        "mount",
        "umount",
        "mkdir",
        "cat",
        "echo",
        "sed",
        "hostname",
        "sleep",
        "ls",
        "login",
        "stty",
        "printf",
        "dd",
        "od",
        "base64",
        "uuencode",
        "uudecode",
    ],
    "sbin": ["init", "getty", "insmod", "reboot", "poweroff"],
}

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class ArchSpec:
    """How one harness arch maps onto Debian packages and kernel modules."""

    arch: str
    debian_arch: str
    kernel_meta: str
    kernel_pattern: str
    modules: tuple[str, ...]  # wanted, in load order; dependencies are added before each
    optional_modules: frozenset[str] = frozenset()


SPECS: dict[str, ArchSpec] = {
    # i386 `-M pc`: the disk may be IDE (ata_piix -> /dev/sda) or virtio-blk-pci (/dev/vda).
    "i386": ArchSpec(
        arch="i386",
        debian_arch="i386",
        kernel_meta="linux-image-686",
        kernel_pattern=r"linux-image-\d+\.\d+\.\d+-\d+-686",
        modules=(
            "sd_mod",
            "ata_piix",
            "ata_generic",
            "virtio_pci",
            "virtio_blk",
            "crc32c_intel",
            "crc32c_generic",
            "ext4",
        ),
        optional_modules=frozenset({"crc32c_intel", "ata_generic"}),
    ),
    # arm `-M virt`: virtio-blk-device on virtio-mmio (or virtio-blk-pci) -> /dev/vda.
    "arm": ArchSpec(
        arch="arm",
        debian_arch="armhf",
        kernel_meta="linux-image-armmp",
        kernel_pattern=r"linux-image-\d+\.\d+\.\d+-\d+-armmp",
        modules=("virtio_mmio", "virtio_pci", "virtio_blk", "crc32c_generic", "ext4"),
    ),
}


@dataclass(frozen=True)
class ReferenceArtifacts:
    """A built reference guest. ``disk`` is the base image: boot it through an overlay."""

    arch: str
    kernel: Path
    initrd: Path
    disk: Path
    manifest: Path
    kernel_version: str


def _spec(arch: str) -> ArchSpec:
    try:
        return SPECS[arch]
    except KeyError:
        raise BuildError(f"No reference guest for arch {arch!r}: choose one of {', '.join(ARCHES)}.") from None


def reference_dir(arch: str) -> Path:
    """``<cache_root()>/reference/<arch>``, where the built artifacts live."""
    return paths.cache_root() / "reference" / _spec(arch).arch


def data_dir() -> Path:
    """``vm/reference``: the init script and the other files copied into the guest."""
    try:
        base = paths.vm_dir()
    except FileNotFoundError:
        # vm_dir() keys on reference.toml; the data files are all this module needs.
        here = Path(paths.__file__).resolve().parent  # the package root, where the wheel ships vm/
        base = next(
            (c for c in (here / "vm", here.parent / "vm") if (c / "reference" / "init").is_file()), here.parent / "vm"
        )
    ref = base / "reference"
    if not (ref / "init").is_file():
        raise BuildError(
            f"The reference guest's data files are missing ({ref}/init not found): the "
            "pytest-minix installation is incomplete; reinstall it."
        )
    return ref


def _inputs_digest(data: Path) -> str:
    """Hash of the recipe inputs: a changed init script must trigger a rebuild."""
    h = hashlib.sha256(BUILDER_VERSION.encode())
    for f in sorted(p for p in data.rglob("*") if p.is_file()):
        h.update(f.relative_to(data).as_posix().encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def _tool(name: str, package: str) -> str:
    # Non-root PATHs often lack /sbin, where mke2fs lives.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise BuildError(
            f"Building the reference guest needs `{name}`, which is not installed: "
            f"install it with `apt-get install {package}`."
        )
    return found


def _run(cmd: list[str], what: str, fix: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise BuildError(f"{what} failed (`{' '.join(cmd)}`): {tail} Fix: {fix}.")


# -- kernel modules ------------------------------------------------------------------


def modname(path: Path | str) -> str:
    """Kernel module name of a file: ``crc32c-intel.ko.xz`` -> ``crc32c_intel``."""
    base = Path(path).name
    base = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base)
    return base.replace("-", "_")


def read_module(path: Path) -> bytes:
    """The uncompressed ELF of a module; busybox insmod cannot load compressed ones."""
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".zst"):
        raise BuildError(
            f"{path.name} is zstd-compressed, which this builder cannot unpack: Debian "
            "bookworm kernels are not; report a pytest-minix bug if the package changed."
        )
    return raw


def modinfo(elf: bytes) -> dict[str, list[str]]:
    """The ``.modinfo`` key=value strings of a module ELF (32 or 64 bit, either endian)."""
    if elf[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    is64 = elf[4] == 2
    end = "<" if elf[5] == 1 else ">"
    if is64:
        (shoff,) = struct.unpack_from(end + "Q", elf, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", elf, 0x3A)
    else:
        (shoff,) = struct.unpack_from(end + "I", elf, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", elf, 0x2E)

    def section(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        if is64:
            (name,) = struct.unpack_from(end + "I", elf, base)
            off, size = struct.unpack_from(end + "QQ", elf, base + 0x18)
        else:
            (name,) = struct.unpack_from(end + "I", elf, base)
            off, size = struct.unpack_from(end + "II", elf, base + 0x10)
        return name, off, size

    _, stroff, _ = section(shstrndx)
    info: dict[str, list[str]] = {}
    for i in range(shnum):
        name_off, off, size = section(i)
        name = elf[stroff + name_off : elf.index(b"\0", stroff + name_off)]
        if name == b".modinfo":
            for item in elf[off : off + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info.setdefault(key, []).append(value)
    return info


@dataclass(frozen=True)
class Module:
    name: str
    relpath: str  # under lib/modules/<ver>/, without compression suffix
    elf: bytes
    depends: tuple[str, ...]


def resolve_modules(moddir: Path, wanted: Iterable[str], optional: Iterable[str] = ()) -> list[Module]:
    """Modules for ``wanted`` plus their dependencies, each after what it depends on.

    Debian ships no ``modules.dep`` (depmod runs at install time), so dependencies come
    from each module's ``.modinfo``. Built-in modules (``modules.builtin``) are skipped.
    """
    builtin_file = moddir / "modules.builtin"
    builtin = (
        {modname(line.strip()) for line in builtin_file.read_text().splitlines()} if builtin_file.is_file() else set()
    )
    files = {modname(p): p for p in moddir.rglob("*.ko*") if re.search(r"\.ko(\.\w+)?$", p.name)}
    optional = set(optional)
    order: list[Module] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise BuildError(f"Module dependency cycle {' -> '.join((*chain, name))}: report a pytest-minix bug.")
        path = files.get(name)
        if path is None:
            if name in optional:
                return
            raise BuildError(
                f"Kernel module {name} (needed by {' -> '.join(chain) or 'the reference guest'}) is "
                f"neither in {moddir} nor built in: the Debian kernel config changed; update "
                "the module list in pytest_minix/reference.py."
            )
        elf = read_module(path)
        # Names in "depends=" may use dashes (t10-pi); module names compare with underscores.
        deps = tuple(d.replace("-", "_") for v in modinfo(elf).get("depends", []) for d in v.split(",") if d)
        for dep in deps:
            visit(dep, (*chain, name))
        seen.add(name)
        rel = re.sub(r"\.(xz|gz|zst)$", "", path.relative_to(moddir).as_posix())
        order.append(Module(name, rel, elf, deps))

    for name in wanted:
        visit(name, ())
    return order


# -- building ------------------------------------------------------------------------


def _find_kernel(root: Path) -> tuple[Path, Path, str]:
    """(vmlinuz, modules dir, version) inside an extracted linux-image package."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(
            f"Expected one boot/vmlinuz-* in the kernel package, found {len(kernels)}: the "
            "Debian packaging changed; report a pytest-minix bug."
        )
    version = kernels[0].name.removeprefix("vmlinuz-")
    for base in (root / "lib" / "modules", root / "usr" / "lib" / "modules"):
        if (base / version).is_dir():
            return kernels[0], base / version, version
    raise BuildError(f"The kernel package has no lib/modules/{version}: report a pytest-minix bug.")


def _make_initrd(spec: ArchSpec, busybox: Path, data: Path, modules: list[Module], kver: str, out: Path) -> None:
    cpio = CpioWriter()
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "mnt/disk",
        "var/log",
        f"lib/modules/{kver}",
    ):
        cpio.add_dir(d, exist_ok=True)
    cpio.add_dir("root", 0o700)
    cpio.add_dir("tmp", 0o1777)
    # The kernel opens /dev/console before /init runs, i.e. before devtmpfs is mounted;
    # without this node init would start with no stdin/stdout.
    cpio.add_device("dev/console", "c", 5, 1, 0o600)
    cpio.add_device("dev/null", "c", 1, 3, 0o666)
    cpio.add_file("bin/busybox", busybox.read_bytes(), 0o755)
    for d, applets in _APPLETS.items():
        for applet in applets:
            cpio.add_symlink(f"{d}/{applet}", "/bin/busybox")
    cpio.add_file("init", (data / "init").read_bytes(), 0o755)
    # root's empty password lives in shadow, not in passwd: busybox 1.35's getpwuid() (its own
    # passwd parser, in the static build) misses every entry whose password field is empty, so
    # "root::0:0:..." made `whoami` print "unknown uid 0". login still asks for no password.
    for name, mode in (
        ("passwd", 0o644),
        ("shadow", 0o600),
        ("group", 0o644),
        ("hostname", 0o644),
        ("profile", 0o644),
        ("inittab.in", 0o644),
    ):
        cpio.add_file(f"etc/{name}", (data / name).read_bytes(), mode)
    cpio.add_file("etc/reference-arch", f"{spec.arch}\n".encode())
    dep_lines = []
    by_name = {m.name: m for m in modules}
    for m in modules:
        cpio.add_file(f"lib/modules/{kver}/{m.relpath}", m.elf, 0o644)
        deps = " ".join(by_name[d].relpath for d in m.depends if d in by_name)
        dep_lines.append(f"{m.relpath}: {deps}".rstrip())
    # modules.dep for the record and for modprobe; init loads modules.load in order.
    cpio.add_file(f"lib/modules/{kver}/modules.dep", ("\n".join(dep_lines) + "\n").encode())
    cpio.add_file(f"lib/modules/{kver}/modules.load", "".join(f"{m.relpath}\n" for m in modules).encode())
    cpio.write(out)


def _make_disk(data: Path, out: Path) -> None:
    mke2fs = _tool("mke2fs", "e2fsprogs")
    _run(
        [
            mke2fs,
            "-q",
            "-t",
            "ext2",
            "-L",
            "reference",
            "-U",
            DISK_UUID,
            "-E",
            "root_owner=0:0",
            "-d",
            str(data / "disk"),
            "-F",
            str(out),
            DISK_SIZE,
        ],
        "Making the reference disk image",
        "install e2fsprogs >= 1.43 (for `mke2fs -d`) with `apt-get install e2fsprogs`",
    )


def _extract(deb: Path, dest: Path) -> None:
    dpkg_deb = _tool("dpkg-deb", "dpkg")
    dest.mkdir(parents=True, exist_ok=True)
    _run(
        [dpkg_deb, "-x", str(deb), str(dest)],
        f"Unpacking {deb.name}",
        f"delete {deb.parent} and retry; the download may be corrupt",
    )


def _artifacts(arch: str, directory: Path, kernel_version: str) -> ReferenceArtifacts:
    return ReferenceArtifacts(
        arch=arch,
        kernel=directory / KERNEL,
        initrd=directory / INITRD,
        disk=directory / DISK,
        manifest=directory / MANIFEST,
        kernel_version=kernel_version,
    )


def load_cached(arch: str) -> ReferenceArtifacts | None:
    """The cached artifacts if the manifest matches them and the current recipe, else None.

    Every artifact's size and sha256 are checked against the manifest (about 0.1 s for
    both arches): a truncated or edited file means a rebuild, not a confusing boot.
    """
    directory = reference_dir(arch)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        if manifest.get("builder_version") != BUILDER_VERSION:
            return None
        if manifest.get("inputs_sha256") != _inputs_digest(data_dir()):
            return None
        for entry in manifest["artifacts"].values():
            path = directory / entry["file"]
            if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
                return None
        return _artifacts(arch, directory, manifest["kernel_version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _lock(arch: str) -> FileLock:
    return FileLock(str(paths.cache_root() / "reference" / f".{arch}.lock"))


def _apt(log: LogFn) -> PrivateApt:
    # One private apt dir for both arches, so they share one index and one `update`.
    return PrivateApt(paths.cache_root() / "apt", [SPECS[a].debian_arch for a in ARCHES], log=log)


def _sweep(arch: str) -> None:
    """Remove leftovers of killed builds; the caller holds this arch's lock."""
    for stale in (paths.cache_root() / "reference").glob(f".build-{arch}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _build(spec: ArchSpec, log: LogFn) -> ReferenceArtifacts:
    start = time.monotonic()
    top = reference_dir(spec.arch).parent
    top.mkdir(parents=True, exist_ok=True)
    _sweep(spec.arch)
    staging = top / f".build-{spec.arch}-{os.getpid()}-{secrets.token_hex(4)}"
    work, out = staging / "work", staging / "out"
    out.mkdir(parents=True)
    try:
        data = data_dir()
        # Hashed before any input is read: files edited during the build then mean a rebuild
        # next time, never a guest built from the old files under the new files' key.
        inputs_sha256 = _inputs_digest(data)
        apt = _apt(log)
        apt.update()
        kernel_pkg = apt.resolve(spec.kernel_meta, spec.debian_arch, spec.kernel_pattern)
        busybox_pkg = apt.info("busybox-static", spec.debian_arch)
        log(
            f"reference[{spec.arch}]: downloading {kernel_pkg.name} {kernel_pkg.version}, "
            f"busybox-static {busybox_pkg.version}"
        )
        debs = apt.download([kernel_pkg, busybox_pkg], work / "debs")
        packages = []
        for pkg in (kernel_pkg, busybox_pkg):
            deb = debs[f"{pkg.name}:{pkg.arch}"]
            digest = sha256_file(deb)
            if pkg.sha256 and digest != pkg.sha256:
                raise BuildError(
                    f"{deb.name} has sha256 {digest}, the index says {pkg.sha256}: the download "
                    f"is corrupt or the index stale; delete {apt.root} and retry."
                )
            packages.append(
                {
                    "name": pkg.name,
                    "arch": pkg.arch,
                    "version": pkg.version,
                    "file": deb.name,
                    "size": deb.stat().st_size,
                    "sha256": digest,
                }
            )

        _extract(debs[f"{kernel_pkg.name}:{kernel_pkg.arch}"], work / "kernel")
        _extract(debs[f"busybox-static:{busybox_pkg.arch}"], work / "busybox")
        vmlinuz, moddir, kver = _find_kernel(work / "kernel")
        busybox = work / "busybox" / "bin" / "busybox"
        if not busybox.is_file():
            raise BuildError(
                "busybox-static has no /bin/busybox: the Debian packaging changed; report a pytest-minix bug."
            )
        modules = resolve_modules(moddir, spec.modules, spec.optional_modules)
        log(f"reference[{spec.arch}]: Linux {kver}, modules: {' '.join(m.name for m in modules)}")

        shutil.copyfile(vmlinuz, out / KERNEL)
        _make_initrd(spec, busybox, data, modules, kver, out / INITRD)
        _make_disk(data, out / DISK)
        artifacts = {
            key: {"file": name, "size": (out / name).stat().st_size, "sha256": sha256_file(out / name)}
            for key, name in (("kernel", KERNEL), ("initrd", INITRD), ("disk", DISK))
        }
        manifest = {
            "builder_version": BUILDER_VERSION,
            "arch": spec.arch,
            "debian_arch": spec.debian_arch,
            "kernel_version": kver,
            "mirror": apt.mirror,
            "suite": "bookworm",
            "packages": packages,
            "modules": [m.relpath for m in modules],
            "artifacts": artifacts,
            "inputs_sha256": inputs_sha256,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.monotonic() - start, 2),
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

        final = reference_dir(spec.arch)
        # Move the old guest aside first: rename() cannot replace a non-empty directory.
        if final.exists():
            final.rename(staging / "old")
        out.rename(final)
        log(f"reference[{spec.arch}]: built in {time.monotonic() - start:.1f}s -> {final}")
        return _artifacts(spec.arch, final, kver)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_reference(arch: str, *, force: bool = False, log: LogFn = print) -> ReferenceArtifacts:
    """Build the reference guest for ``arch``; with ``force=False`` a valid cache is reused."""
    spec = _spec(arch)
    (paths.cache_root() / "reference").mkdir(parents=True, exist_ok=True)
    with _lock(spec.arch):
        if not force:
            cached = load_cached(spec.arch)
            if cached is not None:
                return cached
        return _build(spec, log)


def ensure_reference(arch: str, log: LogFn = print) -> ReferenceArtifacts:
    """The reference guest for ``arch``, built on first use.

    Guarded by a file lock in the cache, so concurrent pytest-xdist workers and
    separate processes build it once; the others wait and then reuse it.
    """
    spec = _spec(arch)
    cached = load_cached(spec.arch)  # lock-free fast path for the common warm case
    if cached is not None:
        top = paths.cache_root() / "reference"
        if any(top.glob(f".build-{spec.arch}-*")):
            # A killed build left ~300 MB behind; tidy up unless a build is running now.
            lock = _lock(spec.arch)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                return cached
            try:
                _sweep(spec.arch)
            finally:
                lock.release()
        return cached
    return build_reference(spec.arch, force=False, log=log)
