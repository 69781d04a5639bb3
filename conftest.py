"""Repository-level pytest configuration: the plugin comes from the installed entry point.

``pytester`` runs nested pytest sessions in the harness self-tests.
"""

pytest_plugins = ["pytester"]
