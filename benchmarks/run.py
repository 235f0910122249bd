"""Run every benchmarks/bench_*.py and print its ratios (see README.md)."""

import runpy
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
for path in sorted(here.glob("bench_*.py")):
    print(f"== {path.name}")
    sys.stdout.flush()
    runpy.run_path(str(path), run_name="__main__")
