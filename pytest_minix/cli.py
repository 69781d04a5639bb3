"""The ``pytest-minix`` command: the claims suites (validate), images (fetch, verify, list, prune),
the reference guest, a serial console, merged reports and the MCP server.

Help texts are plain text (no Markdown or reST): argparse prints them as they are.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import tempfile
import termios
import textwrap
import tty
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_minix.errors import ConfigError, GuestUnavailable, HarnessError, ImageError
from pytest_minix.media.minix import add_source_options
from pytest_minix.profiles import ARCHES, available_guests, expand_arch, load_profile

if TYPE_CHECKING:  # the pool (and QEMU's layers) are imported only by the commands that boot
    from pytest_minix.guest.pool import HarnessConfig

DESCRIPTION = (
    "Boot MINIX 3 (or the Linux reference guest) under QEMU and validate claims about it. "
    "validate runs the shipped claims suites with pytest; the other commands manage images, "
    "the reference guest, a serial console, merged reports and the MCP server."
)

DETACH = b"\x1d"  # Ctrl-], as in telnet and virsh console

# The exit status of each command: (command, status, meaning); the rows of EVERY apply to every
# command but validate, which returns pytest's. The README's "Exit codes" table is the same list
# (tests/harness/test_cli.py compares them). No meaning contains a semicolon: the README joins them with one.
EVERY = "every other command"
EXIT_CODES: list[tuple[str, str, str]] = [
    ("validate", "0", "every selected test passed or skipped (an inconclusive or reported claim)"),
    ("validate", "1", "a test failed: a claim refuted, or inconclusive under --minix-claims-strict"),
    ("validate", "2", "interrupted (Ctrl-C)"),
    ("validate", "3", "pytest internal error"),
    ("validate", "4", "usage error: a bad option or ini value"),
    ("validate", "5", "no tests collected (-k or -m matched none)"),
    ("validate", "10", "the harness broke (no QEMU, a bad image, a guest that never booted)"),
    (
        "validate",
        "11",
        "claims not run: their guest was unavailable (no image and downloads off, no machine for the arch), "
        "unless --minix-allow-not-run",
    ),
    ("fetch", "0", "the image is cached and verified (path and SHA-256 on stdout)"),
    ("fetch", "2", "error: unknown release, checksum mismatch, the cache not writable"),
    ("fetch", "3", "unavailable: not cached and downloads are off, or the download failed"),
    ("images", "0", "listed or pruned"),
    ("states", "0", "listed or pruned"),
    ("verify", "0", "the image matches its record and pin"),
    ("verify", "1", "the image does not match, is not cached or cannot be read"),
    ("verify", "2", "error: unknown release, a malformed --sha256"),
    ("build-reference", "0", "built, or the cached build verified"),
    ("build-reference", "2", "the build failed (the message says why and what to do)"),
    ("guests", "0", "listed"),
    ("console", "0", "detached with Ctrl-] (the VM is stopped)"),
    ("console", "1", "the console ended otherwise: QEMU exited, or the end of input"),
    ("console", "2", "error: unknown guest, a bad option or ini value, QEMU missing, the boot failed"),
    ("console", "3", "unavailable here: no MINIX image and downloads off, or this QEMU lacks the machine"),
    ("merge-reports", "0", "merged"),
    ("merge-reports", "1", "a merged claim is refuted (only with --fail-on-refuted)"),
    ("merge-reports", "2", "a report cannot be read, or does not fit the others"),
    ("mcp", "0", "the client closed the connection"),
    ("mcp", "2", "the mcp extra is not installed, or a bad option"),
    ("mcp", "128+N", "stopped by signal N (SIGTERM, SIGHUP, SIGINT) after shutting every VM down"),
    (EVERY, "2", "bad arguments (the usage message says which), or a harness error"),
    (EVERY, "130", "interrupted with Ctrl-C"),
]


def exit_codes_text(command: str | None = None) -> str:
    """The exit codes as a plain-text table: all of them, or one command's (with those of every command)."""
    rows = [r for r in EXIT_CODES if command is None or r[0] == command or (r[0] == EVERY and command != "validate")]
    width = max(len(r[0]) for r in rows)
    lines = [f"  {cmd:<{width}}  {status:>5}  {meaning}" for cmd, status, meaning in rows]
    if command is not None:
        lines = [f"  {status:>5}  {meaning}" for _cmd, status, meaning in rows]
    return "exit status:\n" + "\n".join(lines)


def package_version() -> str:
    """The installed distribution's version (what pip installed, editable or not)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-minix")
    except PackageNotFoundError:
        return "unknown (not installed: pip install pytest-minix)"


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


def _report_removed(removed: list[Path], what: str, where: Path) -> int:
    """What a prune removed, one line each, then the count (exit status 0)."""
    for p in removed:
        print(f"removed {p}")
    print(f"{len(removed)} {what} removed from {where}")
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from pytest_minix.media.releases import load_manifest

    store = _store(args)
    manifest = load_manifest()
    if args.prune or args.all:
        return _report_removed(store.prune(set(manifest.releases), everything=args.all), "item(s)", store.root.parent)
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


def cmd_states(args: argparse.Namespace) -> int:
    import time

    from pytest_minix.guest.bootcache import BootCache, SavedState

    cache = BootCache()
    if args.prune or args.all:
        return _report_removed(cache.prune(everything=args.all), "saved state(s)", cache.root)
    entries = cache.entries()
    if not entries:
        print(f"no saved VM states in {cache.root} (a session saves one after its first cold boot)")
    total = 0
    for e in entries:
        if not isinstance(e, SavedState):
            print(f"{'?':<12}  incomplete or unreadable (removed by --prune)  {e}")
            continue
        total += e.size
        age = (time.time() - e.saved_at) / 3600
        stale = cache.stale(e)
        why = f"  STALE: {stale} (removed by --prune)" if stale else ""
        print(f"{e.key[:12]}  {e.size / 2**20:7.1f} MiB  {age:6.1f} h old  {e.describe()}{why}")
    if total:
        print(f"{total / 2**20:.1f} MiB in {cache.root}")
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


# -- the project's pytest configuration: console settings, validate's config file -----------------
def project_config(pytest_args: Sequence[str]) -> Any:
    """pytest's own configuration here with ``pytest_args``: the config file pytest picks, the plugin's
    options and ini settings; no session runs. Raises ConfigError when pytest refuses them."""
    import pytest

    class Grab:
        config: pytest.Config | None = None

        @pytest.hookimpl(tryfirst=True)
        def pytest_cmdline_main(self, config: pytest.Config) -> int:
            self.config = config  # stop here: no configure, no collection
            return 0

    grab = Grab()
    # Plain asserts: this process has imported the plugin already, pytest could not rewrite it (and would warn).
    status = pytest.main(["--assert=plain", "-p", "no:cacheprovider", *pytest_args], plugins=[grab])
    if grab.config is None:
        raise ConfigError(f"pytest refused these settings (exit status {int(status)}): see its message above.")
    return grab.config


def ini_key(option: str) -> str:
    """The plugin's ini twin of an option: ``--minix-memory`` -> ``minix_memory``, ``--arch`` -> ``minix_arch``."""
    return "minix_arch" if option == "--arch" else option.lstrip("-").replace("-", "_")


def console_options(parser: argparse.ArgumentParser) -> list[tuple[str, str, bool]]:
    """The console's options, all the plugin's too: (dest, option, is a flag)."""
    out = []
    for action in parser._actions:
        opt = next((o for o in action.option_strings if o == "--arch" or o.startswith("--minix-")), None)
        if opt is not None:
            out.append((action.dest, opt, action.nargs == 0))
    return out


def console_settings(args: argparse.Namespace, log_dir: Path) -> tuple[HarnessConfig, list[str], Path | None]:
    """The console's settings as the plugin reads them: the command line, then the project's pytest ini file.

    Returns the settings (one arch: the first of ``all``), the ini keys that filled a setting, and the
    ini file. Every value is checked by the plugin's own rules (pytest_minix.plugin.options).
    """
    import pytest

    from pytest_minix.plugin.options import harness_config, read_ini

    given = [(dest, opt, flag) for dest, opt, flag in args.console_options if getattr(args, dest) not in (None, False)]
    forwarded = [opt if flag else f"{opt}={getattr(args, dest)}" for dest, opt, flag in given]
    config = project_config(forwarded)
    try:
        settings = harness_config(config, log_dir)
    except pytest.UsageError as exc:
        raise ConfigError(str(exc)) from None
    on_command_line = {opt for _, opt, _ in given}
    used = [
        ini_key(opt)
        for _, opt, _ in args.console_options
        if opt not in on_command_line and config.inipath and read_ini(config, ini_key(opt)) not in (None, "", False)
    ]
    return replace(settings, arches=settings.arches[:1]), used, config.inipath


def cmd_console(args: argparse.Namespace) -> int:
    """Boot a guest and join the terminal to its serial console until Ctrl-] or QEMU exits."""
    from pytest_minix.guest.pool import VMPool

    temp_logs = Path(tempfile.mkdtemp(prefix="pytest-minix-console-"))
    config, used, inipath = console_settings(args, temp_logs)
    if config.log_dir != temp_logs:
        temp_logs.rmdir()
    if used:
        print(f"pytest-minix console: from {inipath}: {', '.join(used)}", file=sys.stderr)
    guest, arch = config.guest, config.arches[0]
    pool = VMPool(config)
    out = sys.stdout.buffer
    try:
        vm = pool.create(pool.spec(arch))
        machine = vm.machine

        def show(data: bytes) -> None:
            out.write(data)
            out.flush()

        vm.console.taps.append(show)
        vm.launch()
        print(
            f"pytest-minix console: {guest} {arch} (accel {machine.spec.accel}), QEMU pid "
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


# pytest options that choose the configuration file or the rootdir: validate leaves both to them.
_CONFIG_OPTIONS = ("-c", "--config-file", "--rootdir", "--inifile")


def validate_args(pytest_args: Sequence[str], inipath: Path | None, cwd: Path, suites: Sequence[Path]) -> list[str]:
    """pytest's arguments for ``validate``: the configuration of ``cwd`` (as for ``pytest --pyargs``), then the suites.

    The suites may live in site-packages, far from the project: without ``-c`` pytest would
    look for its configuration above them instead of where the user runs the command.
    ``inipath`` is the file pytest itself picks in ``cwd`` (:func:`project_config`).
    """
    args = list(pytest_args)
    if not any(a in _CONFIG_OPTIONS or a.startswith(tuple(f"{o}=" for o in _CONFIG_OPTIONS)) for a in args):
        args = ["-c", str(inipath), *args] if inipath else [f"--rootdir={cwd}", *args]
    return [*args, *map(str, suites)]


def cmd_validate(pytest_args: Sequence[str]) -> int:
    """Run pytest on the shipped claims suites with these arguments; pytest's exit status.

    pytest runs in a child interpreter, as the ``pytest`` command would: in this process the
    plugin is already imported and pytest could not rewrite its asserts.
    """
    import subprocess

    from pytest_minix.paths import suite_dirs

    try:
        suites = suite_dirs()
    except FileNotFoundError as exc:
        print(f"pytest-minix: error: {exc}", file=sys.stderr)
        return 2
    print(f"pytest-minix validate: the claims suites in {suites[0].parent}", file=sys.stderr, flush=True)
    inipath = project_config([]).inipath
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *validate_args(pytest_args, inipath, Path.cwd(), suites)])
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached pytest too: it ends the session and reports
            continue


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their line breaks (the exit-code tables)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-minix",
        description=textwrap.fill(DESCRIPTION, 79),
        epilog=exit_codes_text(),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")

    def command(name: str, help_: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(  # type: ignore[no-any-return]
            name,
            help=help_,
            description=textwrap.fill(help_[0].upper() + help_[1:] + ".", 79),
            formatter_class=_Formatter,
            **kwargs,
        )

    val = command(
        "validate",
        "run the claims suites (boot, syscalls, memory) with pytest; every argument goes to pytest",
        add_help=False,
        usage="pytest-minix validate [pytest arguments ...]",
    )
    val.add_argument(
        "pytest_args",
        nargs=argparse.REMAINDER,
        metavar="pytest arguments",
        help="passed to pytest as they are, for example --arch=all --minix-claims-report=out/validation.json "
        "(pytest-minix validate --help shows pytest's help, with the pytest-minix options)",
    )
    val.set_defaults(func=lambda args: cmd_validate(args.pytest_args))

    b = command("build-reference", "build (or check) the reference guest from Debian packages")
    b.add_argument("--arch", type=_arches, default=ARCHES, help="i386, arm or all (default all)")
    b.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    b.set_defaults(func=cmd_build_reference)
    g = command("guests", "list the guest profiles")
    g.set_defaults(func=cmd_guests)

    i = command("images", "list cached MINIX images (size, SHA-256, release), or prune the cache")
    i.add_argument(
        "--prune",
        action="store_true",
        help="remove partial downloads, leftovers and images of releases no longer in the manifest",
    )
    i.add_argument("--all", action="store_true", help="with --prune: remove every cached image and boot set")
    i.set_defaults(func=cmd_images)

    st = command(
        "states",
        "list the boot cache: logged-in VMs saved after a cold boot, from which later sessions start warm",
    )
    st.add_argument(
        "--prune",
        action="store_true",
        help="remove incomplete entries and those no session can use any more (another harness version, "
        "a changed QEMU, a missing image)",
    )
    st.add_argument("--all", action="store_true", help="remove every saved state")
    st.set_defaults(func=cmd_states)

    f = command("fetch", "download, decompress and record (or verify) a MINIX release image")
    f.add_argument("release", nargs="?", default=None, help="release name (default: the manifest's default)")
    f.add_argument("--sha256", default="", help="pin: the SHA-256 of the image or of the download")
    f.add_argument("--force", action="store_true", help="download again even if cached")
    f.add_argument(
        "--minix-offline", dest="offline", action="store_true", help="never download (only verify what is cached)"
    )
    f.add_argument("--timeout", type=float, default=30.0, help="seconds without data before a retry (default 30)")
    f.add_argument("--retries", type=int, default=3, help="retries after a failed attempt (default 3)")
    f.set_defaults(func=cmd_fetch)

    v = command("verify", "re-hash a cached release (or --image PATH) against its record or pin")
    v.add_argument("release", nargs="?", default=None, help="release name (default: the manifest's default)")
    v.add_argument("--image", help="a MINIX image file to check instead of a cached release")
    v.add_argument("--sha256", default="", help="expected SHA-256")
    v.set_defaults(func=cmd_verify)

    m = command("merge-reports", "merge --minix-claims-report files of several sessions (CI shards, hosts)")
    m.add_argument("reports", nargs="+", help="JSON reports written by --minix-claims-report")
    m.add_argument("-o", "--output", required=True, help="merged JSON report (a Markdown twin is written beside it)")
    m.add_argument("--fail-on-refuted", action="store_true", help="exit 1 when any merged claim is refuted")
    m.set_defaults(func=cmd_merge_reports)

    c = command(
        "console",
        "boot a guest and attach this terminal to its serial console (Ctrl-] detaches)",
        epilog=textwrap.fill(
            "Settings not given here come from the pytest configuration file that pytest would use in the current "
            "directory (pytest.ini, pyproject.toml, tox.ini or setup.cfg), under the plugin's ini names "
            "(minix_guest, minix_arch, minix_accel, ...: see pytest --help). The command line wins.",
            79,
        ),
    )
    # The same option names as the pytest plugin's (pytest --help, group "pytest-minix"), and its ini file.
    c.add_argument("--minix-guest", dest="guest", help="guest profile (default minix)")
    c.add_argument("--arch", choices=ARCHES, help="guest arch (default i386)")
    c.add_argument("--minix-accel", dest="accel", choices=("auto", "kvm", "tcg"), help="accelerator (default auto)")
    c.add_argument("--minix-memory", dest="memory", type=int, help="guest RAM in MiB (default: the guest's)")
    c.add_argument("--minix-qemu-i386", dest="qemu_i386", help="QEMU binary for i386 guests")
    c.add_argument("--minix-qemu-arm", dest="qemu_arm", help="QEMU binary for ARM guests")
    c.add_argument("--minix-network", dest="network", action="store_true", help="give the guest a user-mode NIC")
    c.add_argument("--minix-log-dir", dest="log_dir", help="where the serial and QEMU logs go (default: a temp dir)")
    add_source_options(c)
    # None means "not on the command line": the project's ini file or the plugin's default applies.
    options = console_options(c)
    c.set_defaults(func=cmd_console, console_options=options, **dict.fromkeys(dest for dest, _, _ in options))

    from pytest_minix.mcp.server import add_parser as add_mcp_parser

    add_mcp_parser(sub)
    for name, p in sub.choices.items():  # every command's --help ends with its exit codes
        p.formatter_class = _Formatter
        p.epilog = f"{p.epilog}\n\n{exit_codes_text(name)}" if p.epilog else exit_codes_text(name)
        if p.description is None:
            p.description = next(a.help for a in sub._choices_actions if a.dest == name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["validate"]:  # everything after it is pytest's, --help included
        return cmd_validate(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GuestUnavailable as exc:
        print(f"pytest-minix: unavailable: {exc}", file=sys.stderr)
        return 3
    except HarnessError as exc:
        print(f"pytest-minix: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be written or read: an error with a message, not a traceback
        print(f"pytest-minix: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
