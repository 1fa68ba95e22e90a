"""Fixtures of the vectorize tests (glnet_cli/vector/).

None of their own yet: the masks are made in the module (``blobs``); the
writers' own tests are in tests/io/test_vector_output.py.
"""
