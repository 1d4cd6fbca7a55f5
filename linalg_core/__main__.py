"""Command line: ``python -m linalg_core {info,demo,bench,compress}``."""

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
    comp = sub.add_parser("compress", help="LQ-compress a safetensors model under a bit budget (LQ-LoRA)")
    comp.add_argument("model", nargs="?", default=None,
                      help="a .safetensors file or a folder of shards (default: the MiniLM-L6 weights)")
    comp.add_argument("--budget", type=float, required=True, help="average bits per weight of the quantized parts")
    comp.add_argument("--rank", type=int, default=64, help="rank of the low-rank part (default 64)")
    comp.add_argument("--fisher", default=None, help="safetensors file of per-weight importances (same names/shapes)")
    comp.add_argument("-o", "--out", required=True, help="output folder (model.safetensors + plan.json)")
    comp.add_argument("--iters", type=int, default=5, help="LQ alternations per matrix (default 5)")
    comp.add_argument("--plan-iters", type=int, default=1, help="LQ alternations when measuring candidates")
    comp.add_argument("--candidates", default=None, help="comma-separated formats (default: NF2/3/4/8 x B0 16-128)")
    comp.add_argument("--include", default=r"\.weight$", help="regex of the tensors to compress")
    comp.add_argument("--exclude", default=None, help="regex of tensors to leave alone (default: embed|norm|lm_head)")
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
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
    elif args.command == "compress":
        return _compress(args)
    return 0


def _compress(args) -> int:
    from linalg_core.quant.compress import DEFAULT_EXCLUDE, compress_model

    try:
        cands = None if args.candidates is None else [c.strip() for c in args.candidates.split(",") if c.strip()]
        report = compress_model(args.model, budget=args.budget, rank=args.rank, out=args.out, fisher=args.fisher,
                                candidates=cands, iters=args.iters, plan_iters=args.plan_iters, include=args.include,
                                exclude=DEFAULT_EXCLUDE if args.exclude is None else args.exclude, seed=args.seed,
                                overwrite=args.overwrite, progress=sys.stderr.isatty())
    except (ValueError, TypeError, OSError) as e:
        print(f"linalg_core compress: error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    print(f"wrote {args.out}/model.safetensors and {args.out}/plan.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
