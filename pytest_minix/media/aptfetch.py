"""Fetch Debian packages of foreign architectures with a private apt configuration.

Everything apt needs (sources, lists, package cache, an empty dpkg status) lives in a
directory of the pytest-minix cache, so no root is needed and the host's dpkg
architectures and apt state are never touched. The mirror is the one the host already
uses for ``bookworm main``, so a host behind a local mirror or proxy keeps working.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from pytest_minix.errors import BuildError

SUITE = "bookworm"
COMPONENT = "main"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: Overrides the mirror found in the host's apt sources.
MIRROR_ENV = "PYTEST_MINIX_DEBIAN_MIRROR"
#: A package index younger than this is reused instead of running ``apt-get update``.
INDEX_MAX_AGE = 24 * 3600.0


def _deb822_stanzas(text: str) -> Iterable[dict[str, str]]:
    stanza: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, ""
        elif line[0] in " \t" and key:
            stanza[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            stanza[key] = value.strip()
    if stanza:
        yield stanza


def mirrors_from_deb822(text: str, suite: str = SUITE, component: str = COMPONENT) -> list[str]:
    """URIs of enabled ``deb`` stanzas of a ``.sources`` file serving ``suite``/``component``."""
    found: list[str] = []
    for st in _deb822_stanzas(text):
        if st.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in st.get("types", "").split():
            continue
        if suite in st.get("suites", "").split() and component in st.get("components", "").split():
            found.extend(st.get("uris", "").split())
    return found


def mirrors_from_list(text: str, suite: str = SUITE, component: str = COMPONENT) -> list[str]:
    """URIs of one-line ``deb`` entries (``sources.list`` style) serving ``suite``/``component``."""
    found: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        # Drop the optional "[arch=... signed-by=...]" block.
        line = re.sub(r"\[[^\]]*\]", " ", line)
        words = line.split()
        if len(words) >= 4 and words[0] == "deb" and words[2] == suite and component in words[3:]:
            found.append(words[1])
    return found


def host_mirror(etc_apt: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The first mirror the host uses for ``suite main``; ``$PYTEST_MINIX_DEBIAN_MIRROR`` wins."""
    override = os.environ.get(MIRROR_ENV)
    if override:
        return override.rstrip("/")
    candidates: list[str] = []
    parts = etc_apt / "sources.list.d"
    for path in sorted(parts.glob("*.sources")):
        candidates += mirrors_from_deb822(_read(path), suite)
    for path in [etc_apt / "sources.list", *sorted(parts.glob("*.list"))]:
        candidates += mirrors_from_list(_read(path), suite)
    # apt's cdrom: and file: URIs are no use to a private config that fetches foreign arches.
    usable = [u for u in candidates if u.startswith(("http://", "https://"))]
    return usable[0].rstrip("/") if usable else DEFAULT_MIRROR


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def split_depends(field: str) -> list[str]:
    """Package names from a Depends field, first alternative of each, versions dropped."""
    names = []
    for clause in field.split(","):
        first = clause.split("|")[0].strip()
        name = re.split(r"[\s(\[]", first, maxsplit=1)[0]
        if name:
            names.append(name.split(":")[0])
    return names


@dataclass(frozen=True)
class PackageInfo:
    """What the index says about one package version."""

    name: str
    arch: str
    version: str
    sha256: str
    size: int
    depends: tuple[str, ...]


class PrivateApt:
    """A private apt configuration rooted at ``root`` for the given Debian architectures."""

    def __init__(
        self,
        root: Path,
        arches: Sequence[str] = ("i386", "armhf"),
        *,
        mirror: str | None = None,
        keyring: Path = DEFAULT_KEYRING,
        log: Callable[[str], None] = print,
    ) -> None:
        self.root = root
        self.arches = tuple(arches)
        self.mirror = mirror or host_mirror()
        self.keyring = keyring
        self.log = log
        # Shared by every arch and process: one `update` at a time.
        self.lock = FileLock(str(root / ".lock"))

    # -- configuration ----------------------------------------------------------------

    @property
    def _parts(self) -> Path:
        return self.root / "sources.list.d"

    @property
    def _stamp(self) -> Path:
        return self.root / "state" / "updated"

    def setup(self) -> None:
        """Write the sources file, empty status and the dirs apt expects."""
        if shutil.which("apt-get") is None or shutil.which("apt-cache") is None:
            raise BuildError(
                "Building the reference guest needs apt-get and apt-cache (Debian/Ubuntu "
                "hosts have them): install the `apt` package, or run on a Debian-based host."
            )
        if not self.keyring.is_file():
            raise BuildError(
                f"The Debian archive keyring {self.keyring} is missing, so the packages of the "
                "reference guest cannot be verified: install it with "
                "`apt-get install debian-archive-keyring`."
            )
        for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        status = self.root / "state" / "status"
        if not status.exists():
            status.write_text("")
        sources = (
            "Types: deb\n"
            f"URIs: {self.mirror}\n"
            f"Suites: {SUITE}\n"
            f"Components: {COMPONENT}\n"
            f"Architectures: {' '.join(self.arches)}\n"
            f"Signed-By: {self.keyring}\n"
        )
        target = self._parts / "pytest-minix.sources"
        if not target.exists() or target.read_text() != sources:
            target.write_text(sources)
            # A new mirror or arch list makes the old index meaningless.
            self._stamp.unlink(missing_ok=True)

    def options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::State": r / "state",
            "Dir::State::Lists": r / "state" / "lists",
            "Dir::State::status": r / "state" / "status",
            "Dir::Cache": r / "cache",
            "Dir::Cache::Archives": r / "cache" / "archives",
            "Dir::Etc::SourceList": "/dev/null",
            "Dir::Etc::SourceParts": self._parts,
            # Host pinning must not apply to our foreign-arch index.
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": r / "preferences.d",
            # Our own dirs need no lock, and the host's locks must never be taken.
            "Debug::NoLocking": "1",
            "APT::Get::List-Cleanup": "0",
        }
        args: list[str] = []
        for key, value in opts.items():
            args += ["-o", f"{key}={value}"]
        # Replace the host's architecture list ("::=" appends to an emptied list).
        args += ["-o", "APT::Architectures="]
        for arch in self.arches:
            args += ["-o", f"APT::Architectures::={arch}"]
        if os.geteuid() == 0:
            # As root apt drops to _apt for downloads, which cannot write into a cache
            # under /root; stay root instead (the files are ours anyway).
            args += ["-o", "APT::Sandbox::User=root"]
        return args

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        cmd = [tool, *self.options(), *args]
        env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        except OSError as exc:
            raise BuildError(f"Could not run {tool}: {exc}. Install the `apt` package.") from exc
        if proc.returncode != 0:
            raise BuildError(self._explain(tool, args, proc.stderr or proc.stdout))
        return proc.stdout

    def _explain(self, tool: str, args: Sequence[str], output: str) -> str:
        tail = " ".join(output.strip().splitlines()[-4:])
        what = " ".join(args)
        if re.search(r"Unable to locate package|has no installation candidate|No packages found", output):
            hint = (
                f"the package is not in {SUITE}/{COMPONENT} for {', '.join(self.arches)} on "
                f"{self.mirror}: check the name, or delete {self.root} to refresh the index"
            )
        elif re.search(r"Could not resolve|Failed to fetch|Temporary failure|Connection|timed out", output):
            hint = (
                f"the Debian mirror {self.mirror} is unreachable: check the network or proxy, "
                f"or point ${MIRROR_ENV} at a reachable Debian mirror"
            )
        elif "NO_PUBKEY" in output or "not signed" in output or "signature" in output.lower():
            hint = (
                f"the mirror's Release file does not verify with {self.keyring}: update it with "
                "`apt-get install --only-upgrade debian-archive-keyring`"
            )
        else:
            hint = f"see apt's message; deleting {self.root} forces a fresh private apt state"
        return f"`{tool} {what}` failed while building the reference guest: {tail} Fix: {hint}."

    # -- operations -------------------------------------------------------------------

    def update(self, max_age: float = INDEX_MAX_AGE, *, force: bool = False) -> bool:
        """Refresh the package index unless a fresh one exists; returns whether it ran."""
        with self.lock:
            self.setup()
            lists = self.root / "state" / "lists"
            fresh = (
                self._stamp.exists()
                and time.time() - self._stamp.stat().st_mtime < max_age
                and any(lists.glob("*_Packages*"))
            )
            if fresh and not force:
                return False
            self.log(f"apt: updating the private {SUITE} index from {self.mirror}")
            self._run("apt-get", "-q", "update")
            if not any(lists.glob("*_Packages*")):
                raise BuildError(
                    f"apt-get update against {self.mirror} produced no package lists for "
                    f"{', '.join(self.arches)}: the mirror may not carry {SUITE}/{COMPONENT} for "
                    f"these architectures; point ${MIRROR_ENV} at a full Debian mirror."
                )
            self._stamp.touch()
            return True

    def info(self, name: str, arch: str) -> PackageInfo:
        """The candidate version of ``name:arch`` from the private index."""
        out = self._run("apt-cache", "show", "--no-all-versions", f"{name}:{arch}")
        stanza = next(iter(_deb822_stanzas(out)), None)
        if not stanza or "version" not in stanza:
            raise BuildError(
                f"apt-cache found no {name}:{arch} in {SUITE}/{COMPONENT} on {self.mirror}: "
                f"check the package name, or delete {self.root} to refresh the index."
            )
        return PackageInfo(
            name=stanza.get("package", name),
            arch=stanza.get("architecture", arch),
            version=stanza["version"],
            sha256=stanza.get("sha256", ""),
            size=int(stanza.get("size", "0") or 0),
            depends=tuple(split_depends(stanza.get("depends", ""))),
        )

    def resolve(self, meta: str, arch: str, pattern: str) -> PackageInfo:
        """Follow metapackage ``meta`` to the dependency whose name matches ``pattern``."""
        meta_info = self.info(meta, arch)
        for dep in meta_info.depends:
            if re.fullmatch(pattern, dep):
                return self.info(dep, arch)
        raise BuildError(
            f"{meta}:{arch} {meta_info.version} depends on {', '.join(meta_info.depends) or 'nothing'}, "
            f"none of which matches {pattern!r}: the Debian packaging changed; update the "
            "reference guest's package table in pytest_minix/reference.py."
        )

    def download(self, packages: Sequence[PackageInfo], dest: Path) -> dict[str, Path]:
        """Download ``.deb`` files into ``dest``; returns ``"name:arch"`` -> path."""
        dest.mkdir(parents=True, exist_ok=True)
        specs = [f"{p.name}:{p.arch}={p.version}" for p in packages]
        with self.lock:
            self._run("apt-get", "-q", "download", *specs, cwd=dest)
        result: dict[str, Path] = {}
        for p in packages:
            # apt names the file name_version_arch.deb with ':' (epochs) URL-quoted.
            fname = f"{p.name}_{p.version.replace(':', '%3a')}_{p.arch}.deb"
            path = dest / fname
            if not path.is_file():
                raise BuildError(
                    f"apt-get download reported success but {path} is missing: delete "
                    f"{self.root} and retry; if it persists, report a pytest-minix bug."
                )
            result[f"{p.name}:{p.arch}"] = path
        return result
