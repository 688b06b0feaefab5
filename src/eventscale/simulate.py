"""Old import path of :mod:`eventscale.simulation`, kept for one release (see the changelog).

``eventscale.simulate`` is now the function :func:`eventscale.simulation.simulate`; this
module stays callable, so ``eventscale.simulate(...)`` works whichever was imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventscale._compat import moved

if TYPE_CHECKING:
    from eventscale.simulation import *  # noqa: F403

moved(__name__, "eventscale.simulation", call="simulate")
