"""The API fixture of tests/api, for the limit and authorization tests."""

from tests.api.conftest import api

__all__ = ["api"]
