"""MINIX's own POSIX test suite (/usr/tests/minix-posix), one pytest item per test.

Each item runs `./run -T -t <name>` (TAP, minix/tests/run) with its own timeout; known
failures (ini `minix_posix_known_failures`, default "53 75 85 isofs vnd": hangs or host-
dependent failures) are xfail with that reason. The live CD has no /usr/tests: then every
item skips with one reason. On other guests the suite does not exist: one skip.
"""

from __future__ import annotations

import pytest

from pytest_minix import VM, CommandTimeout
from pytest_minix.measure.posix_suite import POSIX_TESTS, parse_tap

SUITE = "/usr/tests/minix-posix"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "posix_test" not in metafunc.fixturenames:
        return
    guest = metafunc.config.getoption("minix_guest") or metafunc.config.getini("minix_guest") or "minix"
    if guest != "minix":
        why = f"MINIX's POSIX suite runs on the minix guest only (this session: {guest})"
        metafunc.parametrize("posix_test", [pytest.param("-", marks=pytest.mark.skip(reason=why))], ids=["suite"])
        return
    known = set((metafunc.config.getini("minix_posix_known_failures") or "53 75 85 isofs vnd").split())
    params = [
        pytest.param(
            name, marks=pytest.mark.xfail(reason="known to fail or hang on some hosts (MINIX docs)", strict=False)
        )
        if name in known
        else name
        for name in POSIX_TESTS
    ]
    metafunc.parametrize("posix_test", params)


@pytest.fixture(scope="session")
def posix_suite_listing(vm_pool) -> dict[str, set[str]]:
    """Per arch, the tests `./run -l` lists (empty when the image has no suite)."""
    return {}


def test_posix(guest: VM, posix_test: str, posix_suite_listing: dict[str, set[str]], pytestconfig) -> None:
    listing = posix_suite_listing.get(guest.arch)
    if listing is None:
        r = guest.shell.run(f"cd {SUITE} 2>/dev/null && ./run -l; cd /", timeout=60)
        listing = set(r.stdout.split()) if r.ok else set()
        posix_suite_listing[guest.arch] = listing
    if not listing:
        pytest.skip(
            f"{SUITE} is not on this image (the live CD has no tests): use an installed or HD image "
            "(--minix-image) to run MINIX's POSIX suite"
        )
    if posix_test not in listing:
        pytest.skip(f"test {posix_test} is not in this image's suite")
    timeout = float(pytestconfig.getini("minix_posix_timeout") or 600)
    # As MINIX expects: from the terminal (test 3 checks that stdin is a tty), in the suite directory.
    try:
        r = guest.shell.run(f"cd {SUITE} && ./run -T -t {posix_test}; cd /", timeout=timeout, tty_stdin=True)
    except CommandTimeout as exc:
        # The test hung (the harness interrupted it and resynchronised): a failure of the test, not of the harness.
        pytest.fail(
            f"MINIX POSIX test {posix_test} did not finish within {timeout:.0f} s "
            f"(ini minix_posix_timeout): {str(exc).splitlines()[0][:300]}"
        )
    if "No test binaries found" in r.stdout:
        # OBSERVED for test 63 on a build without shared libraries (MKPIC=no): listed, not built.
        pytest.skip(f"test {posix_test} is listed but not built in this image: ./run says {r.stdout.strip()!r}")
    result = parse_tap(r.stdout)
    outcome = result.outcomes.get(posix_test)
    assert outcome is not None, f"no TAP line for test {posix_test} in:\n{r.stdout[-2000:]}"
    assert outcome.ok, f"MINIX POSIX test {posix_test} failed:\n" + "\n".join(outcome.detail[-30:])
