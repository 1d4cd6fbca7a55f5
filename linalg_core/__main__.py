"""Command line: ``python -m linalg_core {info,demo,bench,compress,vsa}`` (``--version``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import warnings

# Packages whose import-time notices and warnings are not about what our subcommands do
# (bitsandbytes' optional hub-kernel message, transformers/peft/hub deprecation notices).
THIRD_PARTY = ("bitsandbytes", "transformers", "peft", "huggingface_hub", "accelerate", "kernels", "gguf")


def version_line() -> str:
    """``linalg_core <version> (torch <version>)``: what ``--version`` prints."""
    import torch

    import linalg_core

    return f"linalg_core {linalg_core.__version__} (torch {torch.__version__})"


class _Version(argparse.Action):
    """``--version``: the line is built only when asked for (argparse's own action needs it up front)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


def quiet_third_party() -> None:
    """Our subcommands' output without other packages' notices, set before any of them is imported:
    the Hugging Face hub offline (the MiniLM-L6 weights and models are local files; a value the
    user set is kept), transformers at error verbosity unless the user chose one, the THIRD_PARTY
    loggers at ERROR and the warnings raised from inside those packages ignored. Only the command
    line does this: importing the library changes no filter."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linalg_core", description=__doc__)
    parser.add_argument("--version", action=_Version, help="print linalg_core's and torch's versions and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, CPU features, available backends and why others are not")
    demo = sub.add_parser("demo", help="the main demo on embedded data (MiniLM-L6 weights + synthetic)")
    demo.add_argument("--quick", action="store_true", help="smaller sizes")
    bench = sub.add_parser("bench", help="benchmarks, compared with the tools users would otherwise call")
    bench.add_argument("family", nargs="*", help="families to run (default: all); e.g. sketch")
    bench.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (smoke run)")
    bench.add_argument("--threads", type=int, default=None, help="threads for torch and linalg_core")
    bench.add_argument("--out", default=None, metavar="DIR",
                       help="folder of the results (<family>.json, .csv, summary.md; default ./linalg_core-bench/)")
    bench.add_argument("--write", action="store_true",
                       help="update the committed benchmarks/results/, benchmarks/RESULTS.md and README's tables "
                            "instead (source checkout only; not with --quick)")
    bench.add_argument("--render", action="store_true",
                       help="run nothing: rewrite benchmarks/RESULTS.md and README's tables from benchmarks/results/")
    bench.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)  # deprecated: the default now
    comp = sub.add_parser("compress", help="LQ-compress a safetensors model under a bit budget (LQ-LoRA)")
    comp.add_argument("model", nargs="?", default=None,
                      help="a .safetensors file or a folder of shards (default: the MiniLM-L6 weights)")
    comp.add_argument("--budget", type=float, required=True,
                      help="average bits per compressed weight, counting everything stored: codes, scales, scales of "
                           "scales and the bfloat16 low-rank factors")
    comp.add_argument("--rank", type=int, default=64,
                      help="largest rank of the low-rank parts (default 64); the planner picks a rank per layer")
    comp.add_argument("--ranks", default=None,
                      help="comma-separated ranks to choose from, 0 = no low-rank part (default: 0 and rank/8, "
                           "rank/4, rank/2, rank)")
    comp.add_argument("--fisher", default=None, help="safetensors file of per-weight importances (same names/shapes)")
    comp.add_argument("--calibration", default=None, metavar="TEXT",
                      help="plan on the model's output instead of the weight error: 'builtin' (English sentences of "
                           "the Python Language Reference, pydoc_data) or a text file, one passage per line, run "
                           "through the model (config.json and tokenizer next to it; needs transformers) to gather "
                           "each layer's input Gram and output-gradient statistics (GPTQ / K-FAC output error)")
    comp.add_argument("-o", "--out", default=None,
                      help="output folder (model.safetensors + plan.json); required unless --dry-run")
    comp.add_argument("--dry-run", action="store_true", help="measure and print the plan only; write nothing")
    comp.add_argument("--iters", type=int, default=5, help="LQ alternations per matrix (default 5)")
    comp.add_argument("--plan-iters", type=int, default=1, help="LQ alternations when measuring candidates")
    comp.add_argument("--candidates", default=None, help="comma-separated formats (default: NF2/3/4/8 x B0 16-128)")
    comp.add_argument("--include", default=r"\.weight$",
                      help="regex of the tensors to compress (case-insensitive; tensors that are not 2-D "
                           "floating-point matrices are kept as stored and listed)")
    comp.add_argument("--exclude", default=None,
                      help="regex of tensors to leave alone (case-insensitive; default: embed|norm|lm_head)")
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    comp.add_argument("--workers", type=int, default=0,
                      help="layers in parallel on this many processes (default: serial)")
    vsa = sub.add_parser("vsa", help="JSON records to MBAT vectors, and nearest-neighbour search")
    vsub = vsa.add_subparsers(dest="vsa_command", required=True)
    enc = vsub.add_parser("encode", help="encode a .jsonl (or .json array) file to VECS.npy (+ VECS.npy.json)")
    enc.add_argument("file")
    enc.add_argument("-o", "--out", required=True,
                     help="VECS or VECS.npy: writes VECS.npy and its codebook settings VECS.npy.json (atomically)")
    enc.add_argument("--dim", type=int, default=4096)
    enc.add_argument("--kind", default="hadamard", help="hadamard | signed_permutation | haar")
    enc.add_argument("--seed", type=int, default=0)
    enc.add_argument("--levels", type=int, default=32, help="steps of the number code (ranges fitted to the file)")
    enc.add_argument("--max-depth", type=int, default=100, help="nesting levels allowed per record (default 100)")
    enc.add_argument("--max-leaves", type=int, default=100_000,
                     help="leaf values allowed per record (default 100000)")
    srch = vsub.add_parser("search", help="the k records nearest to a JSON query")
    srch.add_argument("vectors", help="VECS or VECS.npy written by 'vsa encode' (VECS.npy.json next to it)")
    srch.add_argument("file", help="the records the vectors were encoded from")
    srch.add_argument("--query", required=True, help="a JSON value, e.g. '{\"Origin\": \"Japan\"}'")
    srch.add_argument("-k", type=int, default=5)
    args = parser.parse_args(argv)
    quiet_third_party()

    if args.command == "info":
        from linalg_core.info import report

        print(report())
    elif args.command == "demo":
        from linalg_core.demo import run

        run(quick=args.quick)
    elif args.command == "bench":
        return _bench(args)
    elif args.command == "compress":
        return _compress(args)
    elif args.command == "vsa":
        return _vsa(args)
    return 0


def _bench(args) -> int:
    from linalg_core.bench import UsageError, render, run_families

    if args.no_write:
        print("linalg_core bench: note: --no-write is deprecated and does nothing: the committed results change "
              "only with --write", file=sys.stderr)
    try:
        if args.render:
            if args.family or args.quick or args.write:
                raise UsageError("--render runs nothing: it takes no family, --quick or --write")
            done = render()
            print(f"rendered {', '.join(done)} into benchmarks/RESULTS.md (and README's tables)")
            return 0
        run_families(args.family, quick=args.quick, threads=args.threads, out=args.out, write=args.write)
    except UsageError as e:
        print(f"linalg_core bench: error: {e}", file=sys.stderr)
        return 2
    return 0


def _vsa(args) -> int:
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return _vsa_encode(args) if args.vsa_command == "encode" else _vsa_search(args)
            finally:
                for w in caught:
                    print(f"linalg_core vsa: warning: {w.message}", file=sys.stderr)
    except (ValueError, TypeError, OSError, KeyError, RecursionError, OverflowError, MemoryError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"linalg_core vsa: error: {msg}", file=sys.stderr)
        return 2


def _vsa_paths(name: str) -> tuple[str, str]:
    """VECS or VECS.npy -> (VECS.npy, VECS.npy.json): the names encode writes and search reads."""
    npy = name if name.endswith(".npy") else name + ".npy"
    return npy, npy + ".json"


def _vsa_encode(args) -> int:
    import json
    import os

    from linalg_core.vsa import MBAT, encode_jsonl, fit_ranges, read_records

    npy, sidecar = _vsa_paths(args.out)
    for target in (npy, sidecar):
        if os.path.exists(target) and os.path.exists(args.file) and os.path.samefile(target, args.file):
            raise ValueError(f"-o {args.out} would overwrite the input file {args.file}")
    records = read_records(args.file)
    mbat = MBAT(args.dim, kind=args.kind, seed=args.seed)
    ranges = fit_ranges(records, max_depth=args.max_depth, max_leaves=args.max_leaves)
    V = encode_jsonl(records, mbat=mbat, ranges=ranges, levels=args.levels, max_depth=args.max_depth,
                     max_leaves=args.max_leaves)
    settings = {"dim": args.dim, "kind": args.kind, "seed": args.seed, "levels": args.levels,
                "max_depth": args.max_depth, "max_leaves": args.max_leaves,
                "ranges": {k: list(v) for k, v in ranges.items()}, "records": len(records)}
    _vsa_write(npy, sidecar, V.numpy(), json.dumps(settings, indent=1))
    print(f"encoded {len(records)} records to {npy} ({args.dim} dims, {args.kind} roles; settings in {sidecar})")
    return 0


def _vsa_write(npy: str, sidecar: str, array, text: str) -> None:
    """Both files through temporary files in their folder and os.replace; the .npy is removed
    again when the settings cannot be put in place, so a .npy never stands without them."""
    import os
    import tempfile

    import numpy as np

    mask = os.umask(0)
    os.umask(mask)
    temps = []
    try:
        for path, suffix in ((npy, ".npy"), (sidecar, ".json")):
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".vsa-",
                                       suffix=suffix + ".tmp")
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                if suffix == ".npy":
                    np.save(f, array)
                else:
                    f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~mask)
        os.replace(temps[0], npy)
        try:
            os.replace(temps[1], sidecar)
        except BaseException:
            os.remove(npy)
            raise
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.remove(tmp)


def _vsa_search(args) -> int:
    import json
    import os

    import numpy as np
    import torch

    from linalg_core.vsa import MBAT, Codec, read_records, search

    npy, sidecar = _vsa_paths(args.vectors)
    for path in (npy, sidecar):
        if not os.path.exists(path):
            raise ValueError(f"{path} not found: 'vsa encode FILE -o {npy[:-4]}' writes {npy} and {npy}.json")
    try:
        with open(sidecar, encoding="utf-8") as f:
            st = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{sidecar} is not valid JSON ({e.msg})") from None
    missing = [k for k in ("dim", "kind", "seed", "levels", "ranges") if not isinstance(st, dict) or k not in st]
    if missing:
        raise ValueError(f"{sidecar} is not the settings file of 'vsa encode' (missing {', '.join(missing)})")
    V = torch.from_numpy(np.load(npy, allow_pickle=False))
    if V.dim() != 2 or V.shape[1] != st["dim"]:
        raise ValueError(f"{npy} holds shape {tuple(V.shape)}, expected (records, {st['dim']}) from {sidecar}")
    records = read_records(args.file)
    if len(records) != V.shape[0]:
        raise ValueError(f"{args.file} has {len(records)} records but {npy} holds {V.shape[0]} vectors")
    try:
        q = json.loads(args.query)
    except json.JSONDecodeError as e:
        raise ValueError(f"--query is not valid JSON: {e.msg}") from None
    except RecursionError:
        raise ValueError("--query is nested too deeply for the JSON parser") from None
    limits = {k: st[k] for k in ("max_depth", "max_leaves") if k in st}
    codec = Codec(MBAT(st["dim"], kind=st["kind"], seed=st["seed"]),
                  {k: tuple(v) for k, v in st["ranges"].items()}, st["levels"], **limits)
    idx, sims = search(V, codec.encode_many([q])[0], args.k)
    for i, s in zip(idx.tolist(), sims.tolist()):
        print(f"{s:.3f}  #{i}  {json.dumps(records[i])}")
    return 0


def _compress(args) -> int:
    from linalg_core.quant.compress import DEFAULT_EXCLUDE, compress_model

    try:
        for option, pattern in (("--include", args.include), ("--exclude", args.exclude)):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise ValueError(f"{option} {pattern!r} is not a valid regular expression: {e}") from None
        if args.out is None and not args.dry_run:
            raise ValueError("-o/--out OUT is required (or --dry-run to print the plan only)")
        cands = None if args.candidates is None else [c.strip() for c in args.candidates.split(",") if c.strip()]
        ranks = None
        if args.ranks is not None:
            try:
                ranks = [int(r) for r in args.ranks.split(",")]
            except ValueError:
                raise ValueError(f"--ranks {args.ranks!r} must be comma-separated integers >= 0") from None
            if not ranks or min(ranks) < 0:
                raise ValueError(f"--ranks {args.ranks!r} must be comma-separated integers >= 0")
        with contextlib.ExitStack() as stack:
            executor = None
            if args.workers > 1:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                import torch

                from linalg_core import _threads

                threads = max(1, torch.get_num_threads() // args.workers)
                executor = stack.enter_context(ProcessPoolExecutor(  # torch's, _C's and the BLAS pools sized
                    args.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_threads.set_pools,
                    initargs=(threads,)))
            report = compress_model(args.model, budget=args.budget, rank=args.rank, ranks=ranks, out=args.out,
                                    fisher=args.fisher, candidates=cands, iters=args.iters,
                                    plan_iters=args.plan_iters, include=args.include,
                                    exclude=DEFAULT_EXCLUDE if args.exclude is None else args.exclude, seed=args.seed,
                                    overwrite=args.overwrite, progress=True if sys.stderr.isatty() else "lines",
                                    executor=executor, dry_run=args.dry_run, calibration=args.calibration)
    except (ValueError, TypeError, OSError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"linalg_core compress: error: {msg}", file=sys.stderr)
        return 2
    print(report.table())
    if not args.dry_run:
        print(f"wrote {args.out} (model.safetensors, quantization.json, plan.json); load it with "
              "linalg_core.quant.load_model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
