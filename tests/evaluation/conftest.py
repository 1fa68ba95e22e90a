"""Fixtures of the evaluation tests (glnet_cli/evaluation/: metrics, rasters, vector truth).

None of their own yet: each module's small prediction and truth rasters stay in
the module. ``shared_data`` (the SpaceNet sample) comes from tests/conftest.py.
"""
