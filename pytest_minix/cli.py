"""The ``pytest-minix`` command: images (fetch, verify, list, prune), the reference guest, a serial console."""

from __future__ import annotations

import argparse
import os
import select
import sys
import tempfile
import termios
import tty
from pathlib import Path

from pytest_minix.errors import ConfigError, GuestUnavailable, HarnessError, ImageError
from pytest_minix.media.minix import add_source_options
from pytest_minix.profiles import ARCHES, available_guests, expand_arch, load_profile

DETACH = b"\x1d"  # Ctrl-], as in telnet and virsh console


def _arches(value: str) -> tuple[str, ...]:
    try:
        return expand_arch(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_build_reference(args: argparse.Namespace) -> int:
    from pytest_minix.media.reference import build_reference, ensure_reference

    for arch in args.arch:
        art = build_reference(arch, force=True) if args.force else ensure_reference(arch)
        print(
            f"{arch}: kernel {art.kernel_version}\n  kernel {art.kernel}\n  initrd {art.initrd}\n"
            f"  disk   {art.disk}\n  manifest {art.manifest}"
        )
    return 0


def cmd_guests(args: argparse.Namespace) -> int:
    for name in available_guests():
        p = load_profile(name)
        print(f"{name:<12} arches: {', '.join(sorted(p.arches)):<10} {p.description}")
    return 0


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pytest_minix.media.images import ImageStore

    return ImageStore(progress=None, timeout=getattr(args, "timeout", 30.0), retries=getattr(args, "retries", 3))


def cmd_images(args: argparse.Namespace) -> int:
    from pytest_minix.media.releases import load_manifest

    store = _store(args)
    manifest = load_manifest()
    if args.prune or args.all:
        removed = store.prune(set(manifest.releases), everything=args.all)
        for p in removed:
            print(f"removed {p}")
        print(f"{len(removed)} item(s) removed from {store.root.parent}")
        return 0
    rows = store.cached()
    if not rows:
        print(f"no MINIX images cached in {store.root} (fetch one with `pytest-minix fetch`)")
    for r in rows:
        size = f"{r['size'] / 2**20:8.1f} MiB"
        if r.get("partial"):
            print(f"{r['release']:<10} {size}  partial download (resumed by the next fetch)  {r['path']}")
        else:
            pinned = "pinned" if r.get("pinned") else "first use"
            print(f"{r['release']:<10} {size}  sha256 {r['sha256']} ({pinned})  {r['path']}")
    known = ", ".join(f"{n}{' (default)' if n == manifest.default else ''}" for n in sorted(manifest.releases))
    print(f"known releases: {known}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from pytest_minix.media.images import offline_from_env
    from pytest_minix.media.releases import load_manifest

    rel = load_manifest().get(args.release)
    image = _store(args).fetch(rel, offline=args.offline or offline_from_env(), pin=args.sha256, force=args.force)
    print(f"{image.path}\nsha256 {image.sha256}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pytest_minix.media.images import ImageStore
    from pytest_minix.media.releases import load_manifest

    try:
        if args.image:
            image = ImageStore.user_image(Path(args.image), args.sha256)
        else:
            image = _store(args).verify(load_manifest().get(args.release), args.sha256)
    except ImageError as exc:
        print(f"pytest-minix: verify FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"OK {image.kind} sha256 {image.sha256} {image.path}")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    """Boot a guest and join the terminal to its serial console until Ctrl-] or QEMU exits."""
    from pytest_minix.guest.pool import HarnessConfig, VMPool
    from pytest_minix.media.minix import source_from_args

    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="pytest-minix-console-"))
    src = source_from_args(args)
    qemu = {a: q for a in ARCHES if (q := getattr(args, f"qemu_{a}", None))}
    config = HarnessConfig(
        guest=args.guest,
        arches=(args.arch,),
        accel=args.accel,
        log_dir=log_dir,
        qemu_binaries=qemu,
        network=args.network,
        minix=src,
    )
    if args.memory:
        config.memory = args.memory
    pool = VMPool(config)
    out = sys.stdout.buffer
    try:
        vm = pool.create(pool.spec(args.arch))
        machine = vm.machine

        def show(data: bytes) -> None:
            out.write(data)
            out.flush()

        vm.console.taps.append(show)
        vm.launch()
        print(
            f"pytest-minix console: {args.guest} {args.arch} (accel {machine.spec.accel}), QEMU pid "
            f"{machine.pid}; serial log {machine.serial_log}. Detach with Ctrl-] (stops the VM).",
            file=sys.stderr,
            flush=True,
        )
        reason = _relay(machine)
        print(f"\r\npytest-minix console: {reason}; serial log {machine.serial_log}", file=sys.stderr)
        return 0 if reason == "detached" else 1
    finally:
        pool.close()


def _relay(machine) -> str:  # type: ignore[no-untyped-def]
    """Copy the terminal's input to the console until the detach key, EOF or QEMU's exit."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    try:
        if saved is not None:
            tty.setraw(fd)  # keys (Ctrl-C included) go to the guest, not to this process
        while True:
            if machine.console.eof:
                return machine.exit_reason() or "the console closed"
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 4096)
            if not data:
                return "end of input"
            if DETACH in data:
                head = data.split(DETACH, 1)[0]
                if head:
                    machine.console.write(head)
                return "detached"
            machine.console.write(data)
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def cmd_merge_reports(args: argparse.Namespace) -> int:
    """Merge claims reports of several sessions (CI shards, hosts) into one JSON + Markdown report."""
    import json

    from pytest_minix.verdicts.report import ClaimsReport

    parts = []
    for path in args.reports:
        try:
            parts.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            print(f"pytest-minix: error: cannot read claims report {path}: {exc}", file=sys.stderr)
            return 2
    try:
        merged = ClaimsReport.merge(parts, [str(p) for p in args.reports])
    except ValueError as exc:
        print(f"pytest-minix: error: {exc}", file=sys.stderr)
        return 2
    json_path, md_path = merged.write(Path(args.output))
    print(merged.table(width=132))
    print(f"report: {json_path} and {md_path}")
    refuted = merged.counts()["refuted"]
    return 1 if refuted and args.fail_on_refuted else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-minix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build-reference", help="build (or check) the reference guest from Debian packages")
    b.add_argument("--arch", type=_arches, default=ARCHES, help="i386, arm or all (default all)")
    b.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    b.set_defaults(func=cmd_build_reference)
    g = sub.add_parser("guests", help="list the guest profiles")
    g.set_defaults(func=cmd_guests)

    i = sub.add_parser("images", help="list cached MINIX images (size, SHA-256, release), or prune the cache")
    i.add_argument(
        "--prune",
        action="store_true",
        help="remove partial downloads, leftovers and images of releases no longer in the manifest",
    )
    i.add_argument("--all", action="store_true", help="with --prune: remove every cached image and boot set")
    i.set_defaults(func=cmd_images)

    f = sub.add_parser("fetch", help="download, decompress and record (or verify) a MINIX release image")
    f.add_argument("release", nargs="?", default=None, help="release name (default: the manifest's default)")
    f.add_argument("--sha256", default="", help="pin: the SHA-256 of the image or of the download")
    f.add_argument("--force", action="store_true", help="download again even if cached")
    f.add_argument(
        "--minix-offline", dest="offline", action="store_true", help="never download (only verify what is cached)"
    )
    f.add_argument("--timeout", type=float, default=30.0, help="seconds without data before a retry (default 30)")
    f.add_argument("--retries", type=int, default=3, help="retries after a failed attempt (default 3)")
    f.set_defaults(func=cmd_fetch)

    v = sub.add_parser("verify", help="re-hash a cached release (or --image PATH) against its record or pin")
    v.add_argument("release", nargs="?", default=None)
    v.add_argument("--image", help="a MINIX image file to check instead of a cached release")
    v.add_argument("--sha256", default="", help="expected SHA-256")
    v.set_defaults(func=cmd_verify)

    m = sub.add_parser("merge-reports", help="merge --minix-claims-report files of several sessions (CI shards, hosts)")
    m.add_argument("reports", nargs="+", help="JSON reports written by --minix-claims-report")
    m.add_argument("-o", "--output", required=True, help="merged JSON report (a Markdown twin is written beside it)")
    m.add_argument("--fail-on-refuted", action="store_true", help="exit 1 when any merged claim is refuted")
    m.set_defaults(func=cmd_merge_reports)

    c = sub.add_parser("console", help="boot a guest and attach this terminal to its serial console (Ctrl-] detaches)")
    # The same option names as the pytest plugin's (pytest --help, group "pytest-minix").
    c.add_argument("--minix-guest", dest="guest", default="minix", help="guest profile (default minix)")
    c.add_argument("--arch", default="i386", choices=ARCHES, help="guest arch (default i386)")
    c.add_argument(
        "--minix-accel", dest="accel", default="auto", choices=("auto", "kvm", "tcg"), help="accelerator (default auto)"
    )
    c.add_argument("--minix-memory", dest="memory", type=int, default=None, help="guest RAM in MiB")
    c.add_argument("--minix-qemu-i386", dest="qemu_i386", default=None, help="QEMU binary for i386 guests")
    c.add_argument("--minix-qemu-arm", dest="qemu_arm", default=None, help="QEMU binary for ARM guests")
    c.add_argument("--minix-network", dest="network", action="store_true", help="give the guest a user-mode NIC")
    c.add_argument(
        "--minix-log-dir", dest="log_dir", default=None, help="where the serial and QEMU logs go (default: a temp dir)"
    )
    add_source_options(c)
    c.set_defaults(func=cmd_console)

    from pytest_minix.mcp.server import add_parser as add_mcp_parser

    add_mcp_parser(sub)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except GuestUnavailable as exc:
        print(f"pytest-minix: unavailable: {exc}", file=sys.stderr)
        return 3
    except HarnessError as exc:
        print(f"pytest-minix: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
