"""eventscale's benchmarks: ``nox -s bench`` (or ``python -m benchmarks``).

Each ``bench_*.py`` module defines ``TITLE`` and ``run(quick: bool) -> str``,
returning a Markdown section body. ``python -m benchmarks --write FILE`` runs them
all and rewrites FILE with the machine, the command, the date and every section.
"""
