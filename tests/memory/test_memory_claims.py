"""Memory claims: measured, decided and enforced (see tests/boot)."""

from __future__ import annotations

import pytest

from pytest_minix.verdicts.verdict import Verdict

pytestmark = pytest.mark.claims("mem.")


def test_claim(claim_verdict: Verdict, enforce_verdict) -> None:
    enforce_verdict(claim_verdict)
