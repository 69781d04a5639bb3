"""The guest's file system against a host-side model: a Hypothesis rule-based state machine.

Each example works in a fresh sandbox directory (``/tmp/pm-fs-<n>``, removed at teardown).
Rules write, append, touch, rename, unlink, mkdir, rmdir and read back paths drawn from
a small name set (spaces, quotes, ``$``, a leading ``-``), including paths whose parent
is missing or a file: the model predicts success or failure and the exit status must
agree. After every step the invariant compares the sandbox listing and every file's
checksum with the model. Commands are POSIX sh with tools both busybox and MINIX
(NetBSD userland) have, paths quoted with ``shlex.quote``.

Content is printable ASCII plus newline written inline with ``printf '%s'``: one round
trip per write, where ``shell.put`` takes three or more (the file-system semantics under
test do not depend on byte values, and ``put`` has its own tests). Control bytes would be
taken as line-editing or tty keys by the guest's shell, so they are not generated.
Reads go through ``od`` so that the console's line-end and noise filtering cannot
alter what is compared.

Settings (environment): ``PYTEST_MINIX_FS_EXAMPLES`` (default 20) and
``PYTEST_MINIX_FS_STEPS`` (default 10) bound the run (~5 s per arch on the reference
guest under TCG, after boot; 150 x 25 takes ~60 s); ``PYTEST_MINIX_FS_DERANDOMIZE=1`` uses Hypothesis's fixed
derandomized seed; ``PYTEST_MINIX_FS_SEED=<int>`` (or ``--hypothesis-seed=<int>``)
picks a seed; a failure prints a ``@reproduce_failure('<version>', b'<blob>')`` line:
pass it whole in ``PYTEST_MINIX_FS_REPRODUCE`` to replay exactly that example. No
example database is written (``database=None``): no untracked ``.hypothesis/`` here.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import os
import posixpath
import re
import shlex
import string
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, reproduce_failure, seed, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pytest_minix.guest.shell import Result, parse_od, posix_cksum

NAMES = ["a", "b", "c d", "it's", "$x", "-e"]
MISSING = "no-such-dir"  # never created: its children have no parent
CONTENT = st.text(alphabet=string.printable.translate(str.maketrans("", "", "\t\r\x0b\x0c")), max_size=24)
_SANDBOXES = itertools.count(1)


def fs_settings() -> settings:
    """CI-sized settings for a VM, adjustable from the environment."""
    env = os.environ
    return settings(
        max_examples=int(env.get("PYTEST_MINIX_FS_EXAMPLES", "20")),
        stateful_step_count=int(env.get("PYTEST_MINIX_FS_STEPS", "10")),
        deadline=None,  # a round trip to an emulated guest varies by tens of ms
        print_blob=True,
        database=None,
        derandomize=env.get("PYTEST_MINIX_FS_DERANDOMIZE", "0") not in ("", "0"),
        suppress_health_check=[HealthCheck.too_slow],
    )


def with_reproduction(factory: Callable[[], FSMachine]) -> Callable[[], FSMachine]:
    """Apply PYTEST_MINIX_FS_SEED / PYTEST_MINIX_FS_REPRODUCE to the machine factory."""
    if s := os.environ.get("PYTEST_MINIX_FS_SEED"):
        factory = seed(int(s))(factory)
    if r := os.environ.get("PYTEST_MINIX_FS_REPRODUCE"):
        m = re.search(r"""['"]([\d.]+)['"]\s*,\s*(b['"][^'"]*['"])""", r)
        if m is None:
            raise ValueError(f"PYTEST_MINIX_FS_REPRODUCE={r!r}: expected @reproduce_failure('<version>', b'<blob>')")
        factory = reproduce_failure(m.group(1), ast.literal_eval(m.group(2)))(factory)
    return factory


class FSMachine(RuleBasedStateMachine):
    """Files and directories under one sandbox, mirrored in ``files`` and ``dirs``."""

    def __init__(self, vm: Any) -> None:
        super().__init__()
        self.vm = vm
        self.root = f"/tmp/pm-fs-{next(_SANDBOXES)}"
        self.files: dict[str, str] = {}  # relative path -> content
        self.dirs: set[str] = set()  # relative paths; the sandbox itself is ""
        self.sh(f"rm -rf {self.q('')} && mkdir {self.q('')}").check()

    # -- helpers ----------------------------------------------------------
    def q(self, rel: str) -> str:
        return shlex.quote(posixpath.join(self.root, rel) if rel else self.root)

    def sh(self, cmd: str) -> Result:
        return self.vm.shell.run(cmd, timeout=30.0)  # type: ignore[no-any-return]

    def expect(self, cmd: str, ok: bool) -> Result:
        r = self.sh(cmd)
        assert (r.status == 0) == ok, f"expected {'success' if ok else 'failure'}: {r}"
        return r

    def parent_ok(self, rel: str) -> bool:
        parent = posixpath.dirname(rel)
        return parent == "" or parent in self.dirs

    def universe(self) -> list[str]:
        """Every path a rule may name: children of each directory, of a file, of a missing directory."""
        paths = {posixpath.join(d, n) for d in ["", *self.dirs] for n in NAMES}
        paths.add(posixpath.join(MISSING, NAMES[0]))
        if self.files:
            paths.add(posixpath.join(min(self.files), NAMES[0]))  # ENOTDIR
        return sorted(paths)

    def draw_path(self, data: st.DataObject, choices: list[str], label: str = "path") -> str:
        return data.draw(st.sampled_from(sorted(choices)), label=label)

    # -- rules ------------------------------------------------------------
    @initialize(names=st.lists(st.sampled_from(NAMES), unique=True, max_size=2))
    def some_dirs(self, names: list[str]) -> None:
        # Rule choice leans to the first rules in short runs: start with directories so
        # nested paths, rmdir and directory renames come up within ~10 steps.
        if names:
            self.expect("mkdir " + " ".join(self.q(n) for n in names), True)
            self.dirs.update(names)

    @rule(data=st.data(), content=CONTENT)
    def write(self, data: st.DataObject, content: str) -> None:
        path = self.draw_path(data, self.universe())
        ok = self.parent_ok(path) and path not in self.dirs
        self.expect(f"printf '%s' {shlex.quote(content)} > {self.q(path)}", ok)
        if ok:
            self.files[path] = content

    @rule(data=st.data(), content=CONTENT)
    def append(self, data: st.DataObject, content: str) -> None:
        path = self.draw_path(data, self.universe())
        ok = self.parent_ok(path) and path not in self.dirs
        self.expect(f"printf '%s' {shlex.quote(content)} >> {self.q(path)}", ok)
        if ok:
            self.files[path] = self.files.get(path, "") + content

    @rule(data=st.data())
    def create(self, data: st.DataObject) -> None:
        path = self.draw_path(data, self.universe())
        ok = self.parent_ok(path)  # touch on an existing file or directory changes no content
        self.expect(f"touch {self.q(path)}", ok)
        if ok and path not in self.dirs:
            self.files.setdefault(path, "")

    @rule(data=st.data())
    def mkdir(self, data: st.DataObject) -> None:
        path = self.draw_path(data, self.universe())
        ok = self.parent_ok(path) and path not in self.dirs and path not in self.files
        self.expect(f"mkdir {self.q(path)}", ok)
        if ok:
            self.dirs.add(path)

    @rule(data=st.data())
    def rmdir(self, data: st.DataObject) -> None:
        path = self.draw_path(data, [*self.dirs, *self.files, MISSING])
        ok = path in self.dirs and not any(p.startswith(path + "/") for p in [*self.dirs, *self.files])
        self.expect(f"rmdir {self.q(path)}", ok)
        if ok:
            self.dirs.remove(path)

    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        path = self.draw_path(data, [*self.files, *self.dirs, MISSING])
        ok = path in self.files  # rm without -r refuses directories
        self.expect(f"rm {self.q(path)}", ok)
        if ok:
            del self.files[path]

    @precondition(lambda self: self.files or self.dirs)
    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        src = self.draw_path(data, [*self.files, *self.dirs, MISSING], "src")
        # mv into an existing directory means "move inside it", and a directory moved
        # into itself is an error whose wording differs: leave those cases out.
        dsts = [
            p
            for p in self.universe()
            if p != src
            and not p.startswith(src + "/")
            and p not in self.dirs
            and (p not in self.files or src in self.files)
        ]
        if not dsts:
            return
        dst = self.draw_path(data, dsts, "dst")
        ok = (src in self.files or src in self.dirs) and self.parent_ok(dst)
        self.expect(f"mv {self.q(src)} {self.q(dst)}", ok)
        if not ok:
            return
        if src in self.files:
            self.files[dst] = self.files.pop(src)
            return
        for table in (self.files, self.dirs):
            moved = [p for p in table if p == src or p.startswith(src + "/")]
            for p in moved:
                new = dst + p[len(src) :]
                if isinstance(table, dict):
                    table[new] = table.pop(p)
                else:
                    table.remove(p)
                    table.add(new)

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        # Not directories: reading one is an error on Linux, raw entries on some BSDs.
        path = self.draw_path(data, [*self.files, posixpath.join(MISSING, NAMES[0])])
        ok = path in self.files
        r = self.expect(f"od -An -v -tx1 {self.q(path)}", ok)
        if ok:
            assert parse_od(r.stdout) == self.files[path].encode(), path

    # -- invariant --------------------------------------------------------
    @invariant()
    def listing_matches_model(self) -> None:
        tool = self.vm.profile.checksum  # sha256sum (busybox has no cksum) or cksum (MINIX)
        r = self.sh(f"find {self.q('')} -type d; echo //; find {self.q('')} -type f -exec {tool} {{}} +").check()
        dirs_text, _, files_text = r.stdout.partition("//\n")
        prefix = self.root + "/"
        dirs = {line[len(prefix) :] for line in dirs_text.splitlines() if line.startswith(prefix)}
        files: dict[str, str] = {}
        for line in files_text.splitlines():
            *sums, path = line.split(None, 1 if tool != "cksum" else 2)
            files[path[len(prefix) :]] = " ".join(sums)
        assert dirs == self.dirs
        assert files == {p: self.checksum(tool, c.encode()) for p, c in self.files.items()}

    @staticmethod
    def checksum(tool: str, data: bytes) -> str:
        return f"{posix_cksum(data)} {len(data)}" if tool == "cksum" else hashlib.sha256(data).hexdigest()

    def teardown(self) -> None:
        self.sh(f"rm -rf {self.q('')}")


def test_fs_matches_model(guest: Any) -> None:
    run_state_machine_as_test(with_reproduction(lambda: FSMachine(guest)), settings=fs_settings())
