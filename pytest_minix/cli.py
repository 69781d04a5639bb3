"""The ``pytest-minix`` command: build the reference guest, list guests."""

from __future__ import annotations

import argparse
import sys

from .errors import HarnessError
from .profiles import ARCHES, available_guests, load_profile


def _arches(value: str) -> tuple[str, ...]:
    if value == "all":
        return ARCHES
    if value not in ARCHES:
        raise argparse.ArgumentTypeError(f"unknown arch {value!r}; use one of {', '.join(ARCHES)} or all")
    return (value,)


def cmd_build_reference(args: argparse.Namespace) -> int:
    from .reference import build_reference, ensure_reference

    for arch in args.arch:
        art = build_reference(arch, force=True) if args.force else ensure_reference(arch)
        print(f"{arch}: kernel {art.kernel_version}\n  kernel {art.kernel}\n  initrd {art.initrd}\n"
              f"  disk   {art.disk}\n  manifest {art.manifest}")  # fmt: skip
    return 0


def cmd_guests(args: argparse.Namespace) -> int:
    for name in available_guests():
        p = load_profile(name)
        print(f"{name:<12} arches: {', '.join(sorted(p.arches)):<10} {p.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-minix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build-reference", help="build (or check) the reference guest from Debian packages")
    b.add_argument("--arch", type=_arches, default=ARCHES, help="i386, arm or all (default all)")
    b.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    b.set_defaults(func=cmd_build_reference)
    g = sub.add_parser("guests", help="list the guest profiles")
    g.set_defaults(func=cmd_guests)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except HarnessError as exc:
        print(f"pytest-minix: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
