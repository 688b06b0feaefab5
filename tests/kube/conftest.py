"""Fixtures for the Kubernetes client tests."""

from __future__ import annotations

import pytest

from servers._proc import unique_name


@pytest.fixture
def ns() -> str:
    """A unique namespace name for one test."""
    return unique_name("ns")
