"""Where a run's time went, and its predicted wall time on N nodes of C cores (kit.exec.makespan).

    .venv/bin/python scripts/makespan.py reports/runs/<run_id> [--nodes 1 2 4 8] [--cores 2 16]

Reads the run's ``run.json`` (wall time per notebook), ``metrics.json`` (``exec``: backend, workers,
stage wall times) and ``artifacts/tasks.csv`` (one row per task: seconds, CPU seconds, node, pid),
and prints:

- task seconds and CPU seconds per model and fold (where the training time goes);
- the serial part: the run's wall time less the wall time of its task stages;
- the wall time predicted for each nodes x cores pair: serial part + the LPT makespan of the task
  CPU seconds on nodes * cores // threads slots, beside the measured wall time.

CPU seconds of a one-thread task are what it costs on an idle core; the wall seconds of a task on
a busy machine are longer by the share of the core it did not get.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kit.exec.makespan import lpt_makespan, predict_wall, stage_times  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run folder (reports/runs/<run_id>)")
    ap.add_argument("--nodes", type=int, nargs="*", default=[1, 2, 4, 8])
    ap.add_argument("--cores", type=int, nargs="*", default=[2, 16])
    ap.add_argument("--column", default="cpu_seconds", choices=["cpu_seconds", "seconds"])
    args = ap.parse_args(argv)
    run = Path(args.run)
    info = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    tasks = pd.read_csv(run / "artifacts" / "tasks.csv").drop_duplicates("task")
    ex = metrics.get("exec", {})
    threads = int(ex.get("threads", 1))
    wall = float(info.get("seconds") or sum(nb["seconds"] for nb in info["notebooks"].values()))
    per_nb = ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in info["notebooks"].items())
    print(f"run {run.name}: profile {info['profile']}, backend {ex.get('backend')}, workers {ex.get('workers')}, threads {threads}; "
          f"wall {wall:.0f} s ({per_nb})")
    by = tasks.groupby(["stage", "model", "fold"])[["seconds", "cpu_seconds"]].sum().round(1)
    print("\ntask time per model and fold (s):")
    print(by.unstack("fold").to_string())
    tot = tasks.groupby("model")[["seconds", "cpu_seconds"]].sum().round(0)
    tot["share of CPU"] = (tot["cpu_seconds"] / tot["cpu_seconds"].sum()).round(3)
    print("\nper model:")
    print(tot.sort_values("cpu_seconds", ascending=False).to_string())
    stages = stage_times(tasks, args.column)
    stage_wall = ex.get("stage_wall_seconds")
    if stage_wall:
        in_stages = float(sum(stage_wall.values()))
    else:  # older runs: a stage lasts at least as long as its busiest worker
        in_stages = float(sum(tasks[tasks["stage"] == s].groupby("pid")["seconds"].sum().max() for s in tasks["stage"].unique()))
    serial = wall - in_stages
    cpu, sec = tasks["cpu_seconds"].sum(), tasks["seconds"].sum()
    print(f"\nmeasured: wall {wall:.0f} s = task stages {in_stages:.0f} s + serial part {serial:.0f} s; "
          f"tasks {len(tasks)}: {sec:.0f} task seconds, {cpu:.0f} CPU seconds (CPU share {cpu / sec:.2f} of a core per task)")
    slots_here = int(ex.get("workers") or 1)
    print(f"longest task {tasks[args.column].max():.0f} s ({tasks.loc[tasks[args.column].idxmax(), 'task']}); "
          f"LPT makespan of the stages on {slots_here} slot(s) here: {sum(lpt_makespan(s, slots_here) for s in stages):.0f} s")
    print(f"\npredicted wall (s) = serial part {serial:.0f} + LPT makespan of task {args.column} on nodes x cores // {threads} slots:")
    print("| nodes | " + " | ".join(f"{c} cores" for c in args.cores) + " |")
    print("|---|" + "---|" * len(args.cores))
    for n in args.nodes:
        row = [f"{predict_wall(stages, nodes=n, cores=c, threads=threads, serial=serial):.0f}" for c in args.cores]
        print(f"| {n} | " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
