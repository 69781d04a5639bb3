"""The pytest plugin: options, fixtures and hooks, the claims plugin, benchmarks, the testinfra backend."""
