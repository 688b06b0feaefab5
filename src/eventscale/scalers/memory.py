"""Old import path of :mod:`eventscale.scalers.gauge`, kept for one release (see the changelog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._compat import moved

if TYPE_CHECKING:
    from eventscale.scalers.gauge import *  # noqa: F403

moved(__name__, "eventscale.scalers.gauge")
