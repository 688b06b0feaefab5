"""Fixtures for the CLI tests."""

from __future__ import annotations

import pytest

from cli._runner import Runner, run_cli


@pytest.fixture
def cli() -> Runner:
    """``cli("evaluate", "m.yaml", "--json")`` runs the command and returns a ``Result``."""
    return run_cli
