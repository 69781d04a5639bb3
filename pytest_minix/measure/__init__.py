"""Measurements: the metric registry, the metrics, units, and pure parsers of guest output."""
