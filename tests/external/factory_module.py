"""A user module for ``eventscale serve-external factory_module:build`` in the CLI tests."""

from __future__ import annotations

from eventscale.testing import StaticScaler


def build() -> dict[str, StaticScaler]:
    """Two named scalers, as a user's factory would return them."""
    return {
        "busy": StaticScaler(12, name="s0-busy", target=4),
        "idle": StaticScaler(0, name="s0-idle", target=4),
    }
