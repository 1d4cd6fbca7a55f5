"""``python -m linalg_core.bench --render``: rewrite benchmarks/RESULTS.md's sections and README's
generated tables from the committed benchmarks/results/*.json, running no benchmark. Any other
arguments are those of ``python -m linalg_core bench``."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    from linalg_core.__main__ import main as cli

    argv = list(sys.argv[1:] if argv is None else argv)
    return cli(["bench", *argv])


if __name__ == "__main__":
    sys.exit(main())
