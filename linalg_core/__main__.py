"""Command line: ``python -m linalg_core {info,demo,bench}``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linalg_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, CPU features, available backends and why others are not")
    demo = sub.add_parser("demo", help="the main demo on embedded data (MiniLM-L6 weights + synthetic)")
    demo.add_argument("--quick", action="store_true", help="smaller sizes")
    bench = sub.add_parser("bench", help="benchmarks, compared with the tools users would otherwise call")
    bench.add_argument("family", nargs="*", help="families to run (default: all); e.g. sketch")
    bench.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (smoke run)")
    bench.add_argument("--threads", type=int, default=None, help="threads for torch and linalg_core")
    bench.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md and results/")
    args = parser.parse_args(argv)

    if args.command == "info":
        from linalg_core.info import report

        print(report())
    elif args.command == "demo":
        from linalg_core.demo import run

        run(quick=args.quick)
    elif args.command == "bench":
        from linalg_core.testing.bench import run_families

        run_families(args.family, quick=args.quick, threads=args.threads, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
