"""The API fixture of tests/api, for the web app's in-process tests."""

from tests.api.conftest import api

__all__ = ["api"]
