"""The metric registry: what the harness can measure on a guest, each with an id, a unit and a method.

A metric's ``measure(ctx)`` returns a :class:`Measurement` (samples in the metric's unit,
and the conditions they were taken under). Claims name metrics by id; the claims
suites, users' own tests and other front ends all call the same functions. A metric
that cannot be taken on this guest, arch or accelerator returns a Measurement with
``unmeasurable`` set to the reason, never a made-up number.

Methods live in their own modules (:mod:`~pytest_minix.measure.boot`, ``layout``,
``memory``, ``minix``, ``syscalls``, and ``placeholders`` for claims without one) and
register themselves here with the :func:`metric` decorator; importing
:mod:`pytest_minix.measure` imports them all.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_minix.guest.pool import VMPool
from pytest_minix.guest.timeline import Timeline
from pytest_minix.guest.vm import VM
from pytest_minix.measure.measurement import Conditions, Measurement
from pytest_minix.qemu.binary import qemu_version
from pytest_minix.qemu.console import Line
from pytest_minix.version import harness_version

Kind = Literal["timing", "count", "size", "address", "flag", "ratio"]

Method = Callable[["MetricContext", "Metric"], Measurement]
"""A metric's method: it is handed the context and its own :class:`Metric` (id, unit, timing)."""


@dataclass(frozen=True)
class Metric:
    id: str
    unit: str
    kind: Kind
    description: str
    method: Method

    @property
    def timing(self) -> bool:
        return self.kind == "timing"

    def measure(self, ctx: MetricContext) -> Measurement:
        """Take this metric in ``ctx``."""
        return self.method(ctx, self)

    def measurement(self, samples: list[float], conditions: Conditions, **kw: Any) -> Measurement:
        """A Measurement of this metric: its id, unit and timing, and ``kw`` (bound, note, extra, ...)."""
        return Measurement(self.id, self.unit, samples, conditions, timing=self.timing, **kw)

    def unmeasurable(self, ctx: MetricContext, reason: str) -> Measurement:
        """This metric cannot be taken in ``ctx``, for ``reason``."""
        return unmeasurable(ctx, self.id, self.unit, reason, timing=self.timing)


METRICS: dict[str, Metric] = {}


def metric(id: str, unit: str, kind: Kind, description: str) -> Callable[[Method], Method]:
    """Register ``fn`` as the method of metric ``id`` (replacing a placeholder of that id, if any)."""

    def register(fn: Method) -> Method:
        METRICS[id] = Metric(id, unit, kind, description, fn)
        return fn

    return register


def metric_units() -> dict[str, str]:
    """Metric id -> unit, for the claims loader."""
    return {m.id: m.unit for m in METRICS.values()}


# -- conditions -------------------------------------------------------------------------------


def conditions_of(vm: VM, image_sha256: str = "") -> Conditions:
    spec = vm.machine.spec
    return Conditions(
        guest=vm.profile.name,
        arch=vm.arch,
        accel=vm.accel,
        cpu=spec.config.cpu or f"{spec.config.machine} default",
        qemu_version=qemu_version(spec.qemu_binary or spec.config.qemu),
        image_sha256=image_sha256,
        harness_version=harness_version(),
    )


# -- boots ------------------------------------------------------------------------------------
@dataclass
class BootRecord:
    """One fresh boot to the harness prompt: its timeline and conditions."""

    timeline: Timeline
    conditions: Conditions
    log_path: str


@dataclass
class MetricContext:
    """What a metric may use: the pool (fresh boots, the shared VM) for one arch, and the session's settings."""

    pool: VMPool
    arch: str
    boot_rounds: int = 3
    progress: Callable[[str], None] | None = None
    _boots: dict[str, list[BootRecord]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def guest_name(self) -> str:
        return self.pool.profile.name

    def guest(self) -> VM:
        return self.pool.get(self.arch)

    def image_sha256(self) -> str:
        return self.pool.media(self.arch).image_sha256

    def conditions(self, vm: VM | None = None) -> Conditions:
        return conditions_of(vm or self.guest(), self.image_sha256())

    def boots(self) -> list[BootRecord]:
        """``boot_rounds`` fresh boots of this arch (made once per session, shared by all boot metrics)."""
        with self._lock:
            if self.arch not in self._boots:
                records = []
                for i in range(self.boot_rounds):
                    label = f"boot round {i + 1}/{self.boot_rounds} ({self.guest_name} {self.arch})"
                    with self._show_phases(label):
                        vm = self.pool.boot(self.arch)
                    try:
                        records.append(BootRecord(vm.timeline, self.conditions(vm), str(vm.log_path)))
                    finally:
                        self.pool.release(vm)
                self._boots[self.arch] = records
            return self._boots[self.arch]

    @contextlib.contextmanager
    def _show_phases(self, label: str) -> Iterator[None]:
        """Progress: the boot's latest milestone, live, while it boots."""
        progress = self.progress
        if progress is None:
            yield
            return
        progress(f"{label}: starting")
        markers = list(self.pool.profile.markers)

        def on_line(line: Line) -> None:
            for m in markers:
                if m.regex.search(line.text):
                    progress(f"{label}: {m.name} at {line.t:.1f} s")

        self.pool.line_listeners.append(on_line)
        try:
            yield
        finally:
            self.pool.line_listeners.remove(on_line)


def unmeasurable(ctx: MetricContext, metric_id: str, unit: str, reason: str, timing: bool = False) -> Measurement:
    """A Measurement with no samples that says why ``metric_id`` cannot be taken in ``ctx``.

    Its conditions name only what is known without a guest (no boot is made to say no).
    Methods use :meth:`Metric.unmeasurable`, which fills in the id, unit and timing.
    """
    cond = Conditions(
        guest=ctx.guest_name, arch=ctx.arch, accel=ctx.pool.accel.requested, harness_version=harness_version()
    )
    return Measurement(metric_id, unit, [], cond, timing=timing, unmeasurable=reason)


__all__ = [
    "METRICS",
    "BootRecord",
    "Kind",
    "Method",
    "Metric",
    "MetricContext",
    "conditions_of",
    "harness_version",
    "metric",
    "metric_units",
    "unmeasurable",
]
