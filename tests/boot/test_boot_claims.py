"""Boot claims: each (claim, arch) measured from fresh boots (--minix-boot-rounds), decided and enforced.

Confirmed passes, refuted fails with claimed and measured side by side, inconclusive
skips with its reason (fails under --minix-claims-strict). The claims are data: claims/*.toml.
"""

from __future__ import annotations

import pytest

from pytest_minix.verdicts.verdict import Verdict

pytestmark = pytest.mark.claims("boot.")


def test_claim(claim_verdict: Verdict, enforce_verdict) -> None:
    enforce_verdict(claim_verdict)
