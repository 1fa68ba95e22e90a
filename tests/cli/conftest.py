"""Fixtures of the command-line tests (glnet_cli/cli.py, glnet_cli/commands/, examples/).

None of their own yet. Every test runs glnet through :func:`tests.helpers.run_glnet`
(in this process) or :func:`tests.helpers.run_glnet_process` (a fresh interpreter,
``python -m glnet_cli``: nothing needs ``glnet`` on PATH), on models from the
``tiny_model``, ``model`` and ``rule_model`` fixtures of tests/conftest.py.
"""
