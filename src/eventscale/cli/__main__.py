"""``python -m eventscale.cli``: the same as the ``eventscale`` command."""

from __future__ import annotations

import sys

from eventscale.cli import main

if __name__ == "__main__":
    sys.exit(main())
