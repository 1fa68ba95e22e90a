"""Fixtures of the inference tests (glnet_cli/inference/: grid, engine, batch, precision, ...).

None of their own yet: each module's scenes and plans stay in the module. From
tests/conftest.py they take ``tiny_model`` (random tiny models), ``model`` (the
quick stage-2 one) and ``rule_model`` (trained, slow lane only).
"""
