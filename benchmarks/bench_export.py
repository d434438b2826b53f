"""Export benchmark: how long `florc export` and `florc plot` take for a realistic store.

The store is written directly (no training): RUNS recorded runs of 50 epochs, each with an
epoch-level print of two values (`epoch E loss L acc A`: 100 values) and a replay of a
batch-level statement printed at 18 steps of every epoch (900 values): 1000 values per run,
10,000 in all by default. Each target runs in a fresh Python process (its library's import is
part of what a user waits for), through `florc.api`:

- first: the first export into an empty folder or tracking store (for MLflow: the SQLite
  store's tables created too);
- again: the same export repeated (everything already there, so nothing is written: the cost
  of finding out);
- plot: `api.plot` of the epoch-level value across all runs.

Writes the section between `<!-- export:begin -->` and `<!-- export:end -->` of RESULTS.md
and prints it. Part of `make bench` (about 40 s on 2 cores; the libraries come with the dev
extras). Usage: python benchmarks/bench_export.py [--runs N] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- export:begin -->", "<!-- export:end -->"
EPOCHS, STEPS = 50, 18
TARGETS = ("tensorboard", "mlflow", "wandb", "plot")


def make_store(root: Path, runs: int) -> int:
    """A store of `runs` recorded runs with a replay each; the number of values."""
    sys.path.insert(0, str(ROOT))
    from florc.store.index import Store

    values = 0
    with Store(root, root / ".florc") as store:
        for run in range(1, runs + 1):
            lr = f"{0.01 * run:.2f}"
            env = {"params": {"lr": lr, "epochs": str(EPOCHS)}, "params_set": ["lr"]}
            rid = store.create_run("record", "train.py", ["--lr", lr], env)
            rows = []
            for e in range(EPOCHS):
                store.add_iteration(rid, e, e)
                loss, acc = 1 / (e + 1 + run), 1 - 1 / (e + 2)
                rows.append(
                    (
                        "train.py:20",
                        e,
                        json.dumps(e),
                        None,
                        "print",
                        f"epoch {e} loss {loss:.5f} acc {acc:.4f}",
                        0,
                    )
                )
            store.add_logs(rid, rows)
            store.finish_run(rid, "done", 0)
            rep = store.create_run("replay", "train.py", [], {}, parent=rid)
            rows = [
                ("train.py:15", e, json.dumps(e), s, "print", f"grad_norm {0.1 * s + e:.4f}", 1)
                for e in range(EPOCHS)
                for s in range(STEPS)
            ]
            store.add_logs(rep, rows)
            store.finish_run(rep, "done", 0)
            values += EPOCHS * 2 + EPOCHS * STEPS
    return values


def one(target: str, project: Path, out: Path) -> None:
    """In a fresh process: time the first and the repeated export (or the plot); print JSON."""
    sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    from florc import api

    if target == "plot":
        result = api.plot(project, "loss", out / "loss.png")
        first = time.perf_counter() - started
        print(json.dumps({"first": first, "again": None, "written": result.points}))
        return
    kwargs = {"out": out}
    result = api.export(project, target, **kwargs)
    first = time.perf_counter() - started
    t = time.perf_counter()
    again = api.export(project, target, **kwargs)
    assert again.written == 0, again
    print(json.dumps({"first": first, "again": time.perf_counter() - t, "written": result.written}))


def measure(runs: int, reps: int) -> tuple[int, dict[str, list[dict[str, float]]]]:
    times: dict[str, list[dict[str, float]]] = {t: [] for t in TARGETS}
    values = 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="florc-export-") as tmp_name:
            tmp = Path(tmp_name)
            values = make_store(tmp / "project", runs)
            for target in TARGETS:
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        target,
                        str(tmp / "project"),
                        str(tmp / f"out-{target}"),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=600,
                    check=False,
                )
                if done.returncode != 0:
                    raise SystemExit(f"{target} failed:\n{done.stderr[-3000:]}")
                times[target].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return values, times


def replace_section(text: str, body: str) -> str:
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return text.rstrip() + "\n\n" + block + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=10, help="recorded runs in the store")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every measurement")
    ap.add_argument("--one", nargs=3, metavar=("TARGET", "PROJECT", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        one(a.one[0], Path(a.one[1]), Path(a.one[2]))
        return 0
    values, t = measure(a.runs, a.reps)

    def med(target: str, key: str) -> str:
        xs = [r[key] for r in t[target] if r[key] is not None]
        return f"{statistics.median(xs):.2f} s ({min(xs):.2f}–{max(xs):.2f})" if xs else "—"

    lines = [
        "## Export and plot: 10 runs × 1000 values"
        if a.runs == 10
        else f"## Export and plot: {a.runs} runs × 1000 values",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. Command: `python benchmarks/bench_export.py "
        f"--runs {a.runs} --reps {a.reps}`: a store of {a.runs} recorded runs of {EPOCHS} epochs, "
        f"each with 100 recorded epoch-level values and a replay of {EPOCHS * STEPS} batch-level "
        f"ones ({values} values). Each target in a fresh process through `florc.api` (its "
        "library's import included); median (range) over the repetitions.",
        "",
        "| target | first export (values written) | again (nothing new) |",
        "|---|---|---|",
    ]
    for target in TARGETS:
        written = t[target][0]["written"]
        what = "plot of `loss`" if target == "plot" else target
        lines.append(f"| {what} | {med(target, 'first')} ({written}) | {med(target, 'again')} |")
    lines += [
        "",
        "MLflow's first export includes importing mlflow and creating the SQLite store's tables; "
        "W&B's starts W&B's service process and writes one offline run folder per florc run. "
        "A repeated export finds out what is there: TensorBoard reads back every event file of "
        "the run folders, MLflow asks each metric's history, W&B compares a digest of each "
        "run's values.",
        "",
    ]
    body = "\n".join(lines)
    RESULTS_MD.write_text(
        replace_section(RESULTS_MD.read_text() if RESULTS_MD.exists() else "", body)
    )
    print(body)
    print(f"wrote {RESULTS_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
