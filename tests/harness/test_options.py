"""Options and ini settings: no clash with a project's own options, ini twins for the flags, checked numbers.

Child sessions run in this process (``runpytest_inprocess``) and boot nothing: they read
the settings through ``minix_config``, which makes no VM (tests not marked qemu, so the
QEMU guard would fail them if one started).
"""

from __future__ import annotations

import json

import pytest

OWN_OPTIONS = """
def pytest_addoption(parser):
    parser.addoption("--offline", action="store_true", default=False, help="the project's own offline mode")
    parser.addoption("--guest", default="anonymous", help="the project's own guest")
    parser.addoption("--accel", default="none", help="the project's own accelerator")
"""

OWN_TEST = """
def test_own_options(request):
    c = request.config
    assert (c.getoption("offline"), c.getoption("guest"), c.getoption("accel")) == (True, "bob", "warp")
    assert request.config.pluginmanager.has_plugin("minix")
    assert c.getoption("minix_guest") == "reference" and c.getoption("minix_offline") is True
"""


def test_project_options_named_offline_guest_accel_load_beside_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(OWN_OPTIONS)
    pytester.makepyfile(test_inner=OWN_TEST)
    args = ("-p", "no:cacheprovider", "--offline", "--guest=bob", "--accel=warp")
    result = pytester.runpytest_subprocess(*args, "--minix-guest=reference", "--minix-offline")
    result.assert_outcomes(passed=1)
    assert "ERROR" not in result.stderr.str()
    help_text = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--help").stdout.str()
    for opt in ("--offline", "--guest", "--accel", "--minix-offline", "--minix-guest", "--minix-accel"):
        assert f"  {opt}" in help_text, opt


SETTINGS = """
import json
from pathlib import Path

def test_settings(minix_config):
    Path("settings.json").write_text(json.dumps({
        "network": minix_config.network,
        "offline": minix_config.minix.offline,
        "memory": minix_config.memory,
        "boot_timeout": minix_config.boot_timeout,
    }))
"""


def _run_settings(pytester: pytest.Pytester, *args: str) -> dict[str, object]:
    pytester.makepyfile(test_inner=SETTINGS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--minix-guest=reference", *args)
    result.assert_outcomes(passed=1)
    return dict(json.loads((pytester.path / "settings.json").read_text()))


def _settings(pytester: pytest.Pytester, ini: str, *args: str) -> dict[str, object]:
    pytester.makeini(f"[pytest]\n{ini}")
    return _run_settings(pytester, *args)


def test_defaults(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_MINIX_OFFLINE", raising=False)
    got = _settings(pytester, "")
    assert got == {"network": False, "offline": False, "memory": None, "boot_timeout": None}


@pytest.mark.parametrize("true", ["true", "yes", "1", "on"])
def test_network_and_offline_have_bool_ini_twins(pytester: pytest.Pytester, true: str) -> None:
    got = _settings(pytester, f"minix_network = {true}\nminix_offline = {true}")
    assert (got["network"], got["offline"]) == (True, True)


def test_the_command_line_flag_wins_over_a_false_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_MINIX_OFFLINE", raising=False)
    got = _settings(pytester, "minix_network = false\nminix_offline = no", "--minix-network")
    assert (got["network"], got["offline"]) == (True, False)


def test_numbers_from_ini_and_command_line(pytester: pytest.Pytester) -> None:
    got = _settings(pytester, "minix_memory = 128\nminix_boot_timeout = 42.5")
    assert (got["memory"], got["boot_timeout"]) == (128, 42.5)
    got = _settings(pytester, "minix_memory = 128", "--minix-memory=64", "--minix-boot-timeout=9")
    assert (got["memory"], got["boot_timeout"]) == (64, 9.0)


@pytest.mark.skipif(pytest.version_tuple < (9,), reason="native TOML configuration ([tool.pytest]) needs pytest 9")
def test_numbers_are_typed_in_native_toml(pytester: pytest.Pytester) -> None:
    """An int and a float in a ``[tool.pytest]`` table (a string-typed ini would refuse them)."""
    pytester.makepyprojecttoml("[tool.pytest]\nminix_memory = 96\nminix_boot_timeout = 30\nminix_network = true\n")
    got = _run_settings(pytester)
    assert (got["network"], got["memory"], got["boot_timeout"]) == (True, 96, 30.0)


@pytest.mark.parametrize(
    ("ini", "expected"),
    [
        (
            "minix_memory = lots",
            "ini setting minix_memory in *tox.ini is not valid (*'lots'*): it takes a whole "
            "number of MiB, at least 16, for example `minix_memory = 256` (or on the command line --minix-memory=256).",
        ),
        (
            "minix_memory = 8",
            "ini setting minix_memory in *tox.ini is *8*: it takes a whole number of MiB, at least "
            "16, for example `minix_memory = 256`*",
        ),
        (
            "minix_boot_timeout = -5",
            "ini setting minix_boot_timeout in *tox.ini is -5.0*: it takes a positive number "
            "of seconds, for example `minix_boot_timeout = 300`*",
        ),
        (
            "minix_boot_timeout = soon",
            "ini setting minix_boot_timeout in *tox.ini is not valid (*'soon'*): it takes a "
            "positive number of seconds, for example `minix_boot_timeout = 300`*",
        ),
        (
            "minix_network = maybe",
            "ini setting minix_network in *tox.ini is not valid (*'maybe'*): it takes true or "
            "false, for example `minix_network = true` (or on the command line --minix-network=true).",
        ),
        (
            "minix_offline = 2",
            "ini setting minix_offline in *tox.ini is not valid (*'2'*): it takes true or false, "
            "for example `minix_offline = true`*",
        ),
    ],
    ids=["memory-word", "memory-small", "timeout-negative", "timeout-word", "network-maybe", "offline-2"],
)
def test_bad_ini_values_are_usage_errors_naming_the_key(pytester: pytest.Pytester, ini: str, expected: str) -> None:
    pytester.makefile(".ini", tox=f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_inner="def test_never(): pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--minix-guest=reference")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{expected}"])


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (
            "--minix-memory=12",
            "--minix-memory takes a whole number of MiB, at least 16, got '12'; for example --minix-memory=256.",
        ),
        (
            "--minix-boot-timeout=0",
            "--minix-boot-timeout takes a positive number of seconds, got '0'; for example --minix-boot-timeout=300.",
        ),
    ],
)
def test_bad_numbers_on_the_command_line(pytester: pytest.Pytester, arg: str, expected: str) -> None:
    pytester.makepyfile(test_inner="def test_never(): pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--minix-guest=reference", arg)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{expected}"])
