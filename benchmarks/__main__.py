"""Run every benchmark and write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) // (1024 * 1024)} GiB RAM"
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores{mem}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--write", type=Path, help="rewrite this Markdown file with the results")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("only", nargs="*", help="run only these benchmark modules (e.g. engine)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n.removeprefix("bench_") in args.only]
    sections: list[str] = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== {module.TITLE}", flush=True)
        body: str = module.run(args.quick)
        print(body, flush=True)
        sections.append(f"## {module.TITLE}\n\n{body.strip()}\n")
    if args.write:
        head = (
            "# Benchmarks\n\n"
            "Figures measured by `nox -s bench` (which runs `python -m benchmarks --write "
            "docs/benchmarks.md`); rerun it to refresh this page. Numbers are from one run on "
            "one machine: compare them with each other, not with other hardware.\n\n"
            f"- Machine: {machine()}\n"
            f"- Date: {dt.date.today().isoformat()}\n"
            f"- Command: `python -m benchmarks --write docs/benchmarks.md"
            f"{' --quick' if args.quick else ''}`\n\n"
        )
        args.write.write_text(head + "\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
