"""Old import path of :mod:`eventscale.runtime.leader`, kept for one release (see the changelog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._compat import moved

if TYPE_CHECKING:
    from eventscale.runtime.leader import *  # noqa: F403

moved(__name__, "eventscale.runtime.leader")
