"""Boot media for the MINIX guest: a release ISO (fetched), a user's ISO or disk image, an SD image."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_minix.errors import ConfigError, GuestUnavailable, ImageError
from pytest_minix.media.bootmedia import BootMedia

if TYPE_CHECKING:  # imported when needed: requests and pycdlib are not needed to run the reference guest
    from pytest_minix.media.images import CachedImage, ImageStore
    from pytest_minix.media.iso import BootSet


@dataclass(frozen=True)
class MinixSource:
    """Where the MINIX image and boot files come from (options ``--minix-*``, ``--minix-offline``)."""

    image: Path | None = None  # a user's ISO, raw or qcow2 image (--minix-image)
    release: str | None = None  # a release from the manifest (--minix-release; default: the manifest's)
    boot_dir: Path | None = None  # kernel + modNN_* (--minix-boot-dir)
    sha256: str = ""  # pin for the image or the download (--minix-sha256)
    arm_image: Path | None = None  # SD card image for MINIX/arm (--minix-arm-image)
    offline: bool = False


def add_source_options(parser: Any) -> None:
    """The ``--minix-*`` and ``--minix-offline`` options of the CLI commands that boot MINIX (console, mcp)."""
    parser.add_argument("--minix-image", default=None, help="a MINIX CD image or disk to boot instead of a release")
    parser.add_argument("--minix-release", default=None, help="MINIX release to fetch (default: the manifest's)")
    parser.add_argument("--minix-boot-dir", default=None, help="kernel and modNN_* files for --minix-image (a disk)")
    parser.add_argument("--minix-sha256", default=None, help="expected SHA-256 of the image or the download")
    parser.add_argument("--minix-arm-image", default=None, help="MINIX/arm SD-card image (needs qemu-linaro)")
    parser.add_argument(
        "--minix-offline", dest="offline", action="store_true", help="never download; use cached or given images only"
    )


def source_from_args(args: Any) -> MinixSource:
    """A MinixSource from the options of :func:`add_source_options` (paths made absolute)."""
    from pytest_minix.media.images import offline_from_env

    def path(value: str | None) -> Path | None:
        return Path(value).resolve() if value else None

    return MinixSource(
        image=path(args.minix_image),
        release=args.minix_release,
        boot_dir=path(args.minix_boot_dir),
        sha256=args.minix_sha256 or "",
        arm_image=path(args.minix_arm_image),
        offline=args.offline or offline_from_env(),
    )


def minix_media(arch: str, src: MinixSource, notify: Callable[[str], None] | None = None) -> BootMedia:
    """Resolve the source into boot media, fetching and extracting as needed."""
    from pytest_minix.media.images import ImageStore
    from pytest_minix.media.releases import load_manifest

    store = ImageStore(notify=notify) if notify else ImageStore()
    if arch == "arm":
        return _arm(src)
    if src.image is not None:
        image = store.user_image(src.image, src.sha256)
        if image.kind != "iso":
            boot = _disk_boot_files(store, src)
            return BootMedia(
                files=_boot_files(boot),
                disks={"disk": image.path},
                disk_formats={"disk": image.kind},
                variant="disk",
                image_sha256=image.sha256,
                description=f"{image.kind} disk image {image.path} (sha256 {image.sha256[:16]}), root c0d0p0, "
                f"kernel from {boot.kernel.parent}",
            )
        return _cd(store, image, src)
    rel = load_manifest().get(src.release)
    return _cd(store, store.fetch(rel, offline=src.offline, pin=src.sha256), src)


def _boot_files(boot: BootSet) -> dict[str, str | Path]:
    check_kernel_machine(boot.kernel, "i386")
    return {"kernel": boot.kernel, "modules": boot.initrd_arg()}


# ELF e_machine values (the System V ABI's list) for the names in error messages.
ELF_MACHINES = {
    0: "no machine",
    2: "SPARC",
    3: "i386 (EM_386)",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "S/390",
    40: "32-bit ARM (EM_ARM)",
    50: "IA-64",
    62: "x86-64 (EM_X86_64)",
    183: "AArch64 (EM_AARCH64)",
    243: "RISC-V (EM_RISCV)",
}
# What each guest arch's kernel must be: MINIX/i386's kernel is a 32-bit ELF for EM_386.
KERNEL_MACHINE = {"i386": 3, "arm": 40}


def elf_machine(path: Path) -> int | None:
    """The ELF header's e_machine, or None if ``path`` does not start with a valid ELF header.

    Only the 20-byte identification + e_type + e_machine is read; a file that merely starts
    with ``\x7fELF`` but has no valid class/data bytes is not taken as ELF.
    """
    try:
        with path.open("rb") as f:
            head = f.read(20)
    except OSError as exc:
        raise ImageError(f"The kernel {path} cannot be read ({exc}). Fix its permissions or path.") from exc
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    return int(struct.unpack_from("<H" if head[5] == 1 else ">H", head, 18)[0])


def check_kernel_machine(kernel: Path, arch: str) -> None:
    """Refuse an ELF kernel built for another machine before QEMU is started; non-ELF kernels pass."""
    want = KERNEL_MACHINE.get(arch)
    got = elf_machine(kernel)
    if want is None or got is None or got == want:
        return
    got_name = ELF_MACHINES.get(got, f"machine {got}")
    raise ImageError(
        f"The kernel {kernel} is an ELF file for {got_name} (e_machine {got}), but the {arch} guest needs "
        f"an ELF for {ELF_MACHINES[want]} (e_machine {want}): QEMU would not boot it. Use the kernel of a "
        f"MINIX {arch} build (its /boot/minix_default/kernel) in --minix-boot-dir, or the matching --arch."
    )


def _cd(store: ImageStore, image: CachedImage, src: MinixSource) -> BootMedia:
    from pytest_minix.media.iso import read_boot_dir

    boot = read_boot_dir(src.boot_dir) if src.boot_dir else store.boot_set(image)
    name = f"MINIX {image.release}" if image.release else str(image.path)
    return BootMedia(
        files={**_boot_files(boot), "cdrom": image.path},
        image_sha256=image.sha256,
        description=f"live CD {name} (sha256 {image.sha256[:16]}), {len(boot.modules)} modules from "
        f"{boot.kernel.parent}",
    )


def _disk_boot_files(store: ImageStore, src: MinixSource) -> BootSet:
    from pytest_minix.media.iso import read_boot_dir
    from pytest_minix.media.releases import load_manifest

    if src.boot_dir is not None:
        return read_boot_dir(src.boot_dir)
    if src.release is not None:
        iso = store.fetch(load_manifest().get(src.release), offline=src.offline)
        return store.boot_set(iso)
    raise disk_needs_boot_files(src.image)


def disk_needs_boot_files(image: Path | None) -> ConfigError:
    return ConfigError(
        f"--minix-image {image} is a disk image, and QEMU boots MINIX from a kernel and modules outside it. "
        "Pass --minix-boot-dir DIR (a directory holding `kernel` and `mod01_ds` ... `mod12_init`, e.g. a copy "
        "of the image's /boot/minix_default) or --minix-release RELEASE (the harness fetches that release's "
        "ISO and takes them from it; it must be the release the disk image was built from)."
    )


def _arm(src: MinixSource) -> BootMedia:
    from pytest_minix.media.iso import image_kind

    if src.arm_image is None:
        raise GuestUnavailable(
            "MINIX/arm needs an SD card image for a BeagleBoard-xM: build one with the MINIX source's "
            "releasetools/arm_sdimage.sh and pass it with --minix-arm-image PATH (ini minix_arm_image). "
            "Or run the ARM suites on the reference guest with --minix-guest=reference."
        )
    path = src.arm_image
    if not path.is_file():
        raise ConfigError(f"--minix-arm-image {path}: no such file. Give the path of a MINIX/arm SD card image.")
    kind = image_kind(path)
    if kind == "iso":
        raise ConfigError(f"--minix-arm-image {path} is an ISO 9660 CD image; MINIX/arm boots from an SD card image.")
    return BootMedia(files={}, disks={"sd": path}, disk_formats={"sd": kind}, description=f"SD image {path}")
