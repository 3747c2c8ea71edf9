"""pytest configuration of the test suite."""

import pytest

# tests/helpers.py holds assertions shared by the test modules: rewrite them like the modules' own,
# so that a failing one shows its operands.
pytest.register_assert_rewrite("helpers")
