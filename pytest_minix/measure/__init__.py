"""Measurements: the metric registry, the metrics, units, and pure parsers of guest output."""

# The metric modules register their methods into registry.METRICS when imported.
from pytest_minix.measure import boot, layout, memory, minix, placeholders, syscalls  # noqa: F401
