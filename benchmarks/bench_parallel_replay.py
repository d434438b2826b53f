"""Benchmark: batch-level replay of every epoch with 1 worker and with N workers.

A log statement inside the batch loop means every requested epoch's batch loop runs again, so
replay gets its speed from running epochs in parallel. Workload: benchmarks/workloads/balanced.py
(an MLP trained with Adam through a DataLoader), recorded once with --checkpoint-all so that
every epoch boundary is a possible starting point. Then a print of the batch loss is added inside
the batch loop, and `florc replay --epochs all` runs with --workers 1 and --workers N,
alternating, each a separate process timed by wall clock. The workload trains with one torch
thread (`--threads 1`), so the recording, the serial replay and every worker compute alike; a
script that uses every core leaves parallel workers on a CPU-only machine little to gain (and
fewer threads per worker than the recording can change floating-point results, which the
fidelity line reports).

speedup = time with 1 worker / time with N workers (median of the ratios of each repetition's
pair); parallel efficiency = speedup / N. Every replay's output is checked against a plain run of
the edited script.

Writes benchmarks/results/parallel_replay.json and the section between `<!-- parallel:begin -->`
and `<!-- parallel:end -->` of benchmarks/RESULTS.md (the rest of the file is kept).

Usage: python benchmarks/bench_parallel_replay.py [--reps N] [--workers N] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "balanced.py"
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_JSON = HERE / "results" / "parallel_replay.json"
BEGIN, END = "<!-- parallel:begin -->", "<!-- parallel:end -->"
ANCHOR = "        optimizer.step()\n"
PROBE = '        print(f"HINDSIGHT e={epoch} batch_loss={loss.item():.6f}")\n'


def run(cmd: list[str], cwd: Path) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"benchmark: `{' '.join(cmd)}` failed ({proc.returncode})")
    return elapsed, proc.stdout, proc.stderr


def hindsight(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("HINDSIGHT ")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; results not saved")
    opts = parser.parse_args()
    args = ["--epochs", "4", "--samples", "2048"] if opts.quick else ["--epochs", "12"]
    args += ["--threads", "1"]
    florc = [sys.executable, "-m", "florc"]
    with tempfile.TemporaryDirectory(prefix="florc-bench-parallel-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        script = project / "balanced.py"
        shutil.copy(WORKLOAD, script)
        t_record, _, record_err = run(
            [*florc, "record", "--checkpoint-all", script.name, *args], project
        )
        source = script.read_text()
        if source.count(ANCHOR) != 1:
            raise SystemExit("benchmark: the batch loop's optimizer.step() was not found")
        script.write_text(source.replace(ANCHOR, ANCHOR + PROBE))
        plain_dir = Path(tmp) / "plain"
        plain_dir.mkdir()
        shutil.copy(script, plain_dir / script.name)
        t_plain, plain_out, _ = run([sys.executable, script.name, *args], plain_dir)
        want = hindsight(plain_out)
        rows = []
        for rep in range(opts.reps):
            order = [1, opts.workers] if rep % 2 == 0 else [opts.workers, 1]
            row: dict = {"rep": rep + 1, "order": order}
            for n in order:
                seconds, out, err = run(
                    [*florc, "replay", script.name, "--epochs", "all", "--workers", str(n)], project
                )
                row[f"w{n}_s"] = seconds
                row[f"w{n}_output_ok"] = hindsight(out) == want
                row[f"w{n}_fidelity"] = next(
                    (ln.removeprefix("florc: ") for ln in err.splitlines() if "fidelity:" in ln),
                    "",
                )
            rows.append(row)
            print(
                f"rep {rep + 1}: 1 worker {row['w1_s']:.2f} s, {opts.workers} workers "
                f"{row[f'w{opts.workers}_s']:.2f} s",
                flush=True,
            )
    n = opts.workers
    speedup = statistics.median(r["w1_s"] / r[f"w{n}_s"] for r in rows)
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "workload": f"benchmarks/workloads/balanced.py {' '.join(args)}",
        "workers": n,
        "plain_edited_s": t_plain,
        "record_s": t_record,
        "record_summary": next(
            (ln.removeprefix("florc: ") for ln in record_err.splitlines() if " done " in ln), ""
        ),
        "rows": rows,
        "median_w1_s": statistics.median(r["w1_s"] for r in rows),
        f"median_w{n}_s": statistics.median(r[f"w{n}_s"] for r in rows),
        "speedup": speedup,
        "efficiency": speedup / n,
        "outputs_ok": all(r["w1_output_ok"] and r[f"w{n}_output_ok"] for r in rows),
    }
    print(
        f"speedup {speedup:.2f}x with {n} workers, efficiency {speedup / n:.0%}; "
        f"outputs {'OK' if result['outputs_ok'] else 'MISMATCH'}"
    )
    if opts.quick:
        return 0 if result["outputs_ok"] else 1
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(result, indent=1) + "\n")
    section = markdown(result)
    doc = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    start, end = doc.find(BEGIN), doc.find(END)
    if start != -1 and end > start:
        doc = doc[:start] + section + doc[end + len(END) :].removeprefix("\n")
    else:
        doc = doc.rstrip("\n") + "\n\n" + section
    RESULTS_MD.write_text(doc)
    print(f"wrote {RESULTS_JSON.relative_to(HERE.parent)} and benchmarks/RESULTS.md")
    return 0 if result["outputs_ok"] else 1


def markdown(r: dict) -> str:
    n = r["workers"]
    lines = [
        BEGIN,
        f"## Parallel replay: batch-level replay of every epoch, 1 worker vs {n} workers",
        "",
        "Written by `make bench` (`benchmarks/bench_parallel_replay.py`, also in "
        "`benchmarks/results/parallel_replay.json`). Nothing here is written by hand.",
        "",
        f"Machine: {r['machine']}. Date: {r['date']}.",
        "",
        "Method: " + __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"Workload: `{r['workload']}`; plain run of the edited script {r['plain_edited_s']:.2f} s; "
        f"record: {r['record_summary']}.",
        "",
        f"| rep | order | 1 worker (s) | {n} workers (s) | output | fidelity (1 / {n}) |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        ok = row["w1_output_ok"] and row[f"w{n}_output_ok"]
        lines.append(
            f"| {row['rep']} | {' → '.join(map(str, row['order']))} | {row['w1_s']:.2f} | "
            f"{row[f'w{n}_s']:.2f} | {'OK' if ok else 'MISMATCH'} | "
            f"{row['w1_fidelity']} / {row[f'w{n}_fidelity']} |"
        )
    lines += [
        "",
        f"Median: 1 worker {r['median_w1_s']:.2f} s, {n} workers {r[f'median_w{n}_s']:.2f} s; "
        f"**speedup {r['speedup']:.2f}×, parallel efficiency {r['efficiency']:.0%}**. Every "
        "worker runs the script's start-up (python, `import torch`, the data and model set-up) "
        "again, which a serial replay pays once; on a machine with more cores than this one the "
        "per-worker share of that fixed cost is what limits efficiency for short runs.",
        END,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
