"""Run the xtask benchmarks: ``python bench/run.py [--json FILE] [--quick]`` (same as ``xtask bench``; the
project must be installed, e.g. ``pip install -e .``).

See :mod:`xtask_core.tools.bench` for what each figure measures.
"""
from __future__ import annotations

import argparse
import sys

from xtask_core.tools.bench import main as bench_main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="xtask performance benchmarks (reference vs fast, same run)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test; numbers mean nothing)")
    parser.add_argument("--only", default=None, metavar="NAMES",
                        help="comma-separated figures to run (e.g. demo_model,inference,finetune_job)")
    args = parser.parse_args(argv)
    return bench_main(json_path=args.json, quick=args.quick, only=args.only)


if __name__ == "__main__":
    sys.exit(main())
