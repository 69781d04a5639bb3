"""The claims suites (boot, syscalls, memory), shipped in the wheel for ``pytest --pyargs pytest_minix.suites``.

The wheel carries the repository's ``tests/boot``, ``tests/syscalls`` and ``tests/memory``
here (``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml); in a checkout
this package is empty and the suites stay in ``tests/``. ``pytest-minix validate`` finds
them in either place (:func:`pytest_minix.paths.suite_dirs`).
"""
