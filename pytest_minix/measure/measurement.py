"""What a metric returns: samples with their unit and the conditions they were taken under."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Conditions:
    """Where and how a measurement was taken; printed beside every verdict."""

    guest: str
    arch: str
    accel: str  # "tcg" or "kvm"
    cpu: str = ""  # QEMU -cpu model ("" = the machine's default)
    qemu_version: str = ""
    image_sha256: str = ""  # the guest image (MINIX ISO/disk, reference disk) when known
    harness_version: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Measurement:
    """Samples of one metric in the metric's unit.

    ``unmeasurable``: why the metric cannot be taken on this guest/arch/accelerator (no
    samples). ``inconclusive``: samples exist but cannot decide a claim (e.g. the harness
    only sees its own markers); both end in an inconclusive verdict with that reason.
    ``bound``: the samples bound the claimed quantity from above ("upper": the
    measurement includes more than the quantity, e.g. firmware time) or below ("lower").
    ``timing``: a duration subject to emulation slowdown under TCG.
    """

    metric: str
    unit: str
    samples: list[float]
    conditions: Conditions
    timing: bool = False
    bound: Literal["upper", "lower"] | None = None
    note: str = ""
    unmeasurable: str | None = None
    inconclusive: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
