#!/usr/bin/env python3
"""End-to-end fps, latency, CPU and memory: gapstream vs the naive reference vs OpenCV HOG.

The same as ``gapstream bench`` (the implementation is the gapstream.bench package); see
benchmarks/README.md. Writes benchmarks/results/{results.md,results.json,README_table.md,
fps.png,latency.png}.

    python benchmarks/fps.py            # full run, about 5-10 minutes on 2 cores
    python benchmarks/fps.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import sys

from gapstream.bench import cli as bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/fps.py", description=__doc__.split("\n\n")[0])
    bench.add_args(p)
    args = p.parse_args(argv)
    if args.command is None:
        args.command = " ".join(["python benchmarks/fps.py", *(sys.argv[1:] if argv is None else argv)])
    return bench.main(args)


if __name__ == "__main__":
    sys.exit(main())
