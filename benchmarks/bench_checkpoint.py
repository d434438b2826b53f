"""Benchmark: what florc's adaptive checkpoint policy costs at record, and what its store keeps.

A. Record overhead. Workloads (benchmarks/workloads/): compute_heavy.py (tiny state, much
   compute), balanced.py (about 12 MB of state, about half a second per epoch) and
   state_heavy.py (a 160 MB state, so one checkpoint costs more than an epoch). For each
   repetition and workload, these runs, each a separate process timed by wall clock from here:

     plain        python W.py                          (the unmodified script)
     budget 0     florc record --overhead 0 W.py       (florc, no checkpoint: its fixed cost)
     budget B     florc record --overhead B W.py       for B in 0.01, 0.05, 0.10

   in an order rotated from one repetition (and workload) to the next, so that slow drifts of
   the machine and the position in the sequence hit every kind of run alike. The overhead of a
   run is its time / the plain run's time of the same repetition - 1; medians over repetitions
   are reported, with the checkpoints taken and skipped, and the cost the policy itself reports
   (florc's summary line on stderr).

B. Storage. frozen.py (a 41 MB frozen embedding under a small trained head) recorded with
   --checkpoint-all, with --checkpoint-all --compress, and with tensors stored as one blob each
   (FLORC_CHUNK_BYTES=0, the layout before chunking); embedding.py (a 41 MB table of which each
   epoch changes a few rows) with and without chunks: checkpoints, their logical bytes (what
   they would take without sharing), the bytes not copied as unchanged and the bytes stored,
   from florc's summary line.

Every run uses a fresh copy of the workload in its own temporary folder, so stores never
accumulate. Writes benchmarks/results/checkpoint.json and the section between the
`<!-- checkpoint:begin -->` and `<!-- checkpoint:end -->` markers of benchmarks/RESULTS.md (the
rest of the file is kept). --quick shrinks the workloads and runs one repetition, for checking
that the benchmark works: its results go to benchmarks/scratch/ only, never to RESULTS.md.

Usage: python benchmarks/bench_checkpoint.py [--reps N] [--threads N] [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS_DIR = HERE / "workloads"
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_JSON = HERE / "results" / "checkpoint.json"
QUICK_JSON = HERE / "scratch" / "checkpoint_quick.json"
QUICK_MD = HERE / "scratch" / "checkpoint_quick.md"

BEGIN, END = "<!-- checkpoint:begin -->", "<!-- checkpoint:end -->"
BUDGETS = (0.01, 0.05, 0.10)
DEFAULT_BUDGET = 0.05
DEFAULT_TARGET = 0.02  # median overhead at the default budget
PLAIN = "plain"
VARIANTS = (PLAIN, 0.0, *BUDGETS)  # what one repetition of one workload runs
RUN_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Workload:
    name: str
    what: str
    full: tuple[str, ...]  # script arguments (besides --threads) for the real benchmark
    quick: tuple[str, ...]  # ... and for --quick

    @property
    def script(self) -> str:
        return f"{self.name}.py"


OVERHEAD_WORKLOADS = (
    Workload(
        "compute_heavy",
        "MLP 64→256→256→64→10 (~100 K parameters), SGD + momentum, `--batches` fresh random "
        "batches of 512 an epoch; state about 1.2 MB (model, gradients, momentum)",
        ("--epochs", "25", "--batches", "120"),
        ("--epochs", "3", "--batches", "15"),
    ),
    Workload(
        "balanced",
        "MLP 128→512→512→10 (~330 K parameters), Adam, `--samples` in-memory samples through "
        "a shuffling DataLoader, batch 128; state about 12 MB with 12288 samples (model, "
        "gradients, Adam's moments, the dataset)",
        ("--epochs", "28", "--samples", "12288"),
        ("--epochs", "3", "--samples", "2048"),
    ),
    Workload(
        "state_heavy",
        "EmbeddingBag 250 K × 80 (80 MB, dense gradients) + linear head, SGD, 2 batches of 64 "
        "an epoch; state about 160 MB (table and its gradient)",
        ("--epochs", "100"),
        ("--epochs", "8"),
    ),
)
FROZEN = Workload(
    "frozen",
    "frozen EmbeddingBag 160 K × 64 (41 MB, requires_grad False) under a trained MLP head "
    "(64→128→10) in an `nn.Module` subclass defined in the script, Adam, `--batches` batches "
    "of 128 an epoch (20 by default); the table is random-initialised float32, which, like "
    "trained weights, zstd barely compresses",
    ("--epochs", "10"),
    ("--epochs", "3", "--batches", "5"),
)
EMBEDDING = Workload(
    "embedding",
    "an Embedding 160 K × 64 (41 MB) trained with sparse gradients and SGD under a linear head, "
    "10 batches of 128 ids an epoch, 99.5% of them from a hot set of 2,048 rows: each epoch "
    "changes the hot rows and a handful of others",
    ("--epochs", "10"),
    ("--epochs", "3", "--batches", "3"),
)
UNCHUNKED = {"FLORC_CHUNK_BYTES": "0"}  # one blob per tensor, as before chunking
# (workload, record options, extra environment): each row of the storage table
STORAGE_RUNS: tuple[tuple[Workload, tuple[str, ...], dict[str, str]], ...] = (
    (FROZEN, ("--checkpoint-all",), {}),
    (FROZEN, ("--checkpoint-all", "--compress"), {}),
    (FROZEN, ("--checkpoint-all",), UNCHUNKED),
    (EMBEDDING, ("--checkpoint-all",), {}),
    (EMBEDDING, ("--checkpoint-all",), UNCHUNKED),
)

# florc's record summary, e.g. "florc: run 3 done — 10 main-loop iterations, 12 checkpoints
# (30.1 MB, 10.2 MB stored), 8 skipped to stay within the budget; checkpointing cost 0.21 s of
# 9.80 s training (2.1%; writer CPU 0.93 s); 11.02 s in all"
SUMMARY = re.compile(
    r"^florc: run (?P<run>\d+) (?P<status>\S+) — (?P<iterations>\d+) main-loop iterations?, "
    r"(?P<checkpoints>\d+) checkpoints? \((?P<logical_mb>[\d.]+) MB, (?P<stored_mb>[\d.]+) MB "
    r"stored\)"
    r"(?:, (?P<unchanged_mb>[\d.]+) MB of unchanged tensors not copied again)?"
    r"(?:, (?P<skipped>\d+) skipped to stay within the budget)?"
    r"(?:; checkpointing cost (?P<cost_s>[\d.]+) s of (?P<training_s>[\d.]+) s training "
    r"\((?P<cost_pct>[\d.]+)%(?:; writer CPU (?P<writer_cpu_s>[\d.]+) s)?\)"
    r"(?: \(incl\. (?P<flush_s>[\d.]+) s writing the last ones after training\))?)?"
    r"; (?P<florc_total_s>[\d.]+) s in all"
    r"(?:; (?P<unusable>\d+) checkpoints? could not be taken)?",
    re.MULTILINE,
)
FROZEN_SIZES = re.compile(r"^frozen (\d+) bytes, trained (\d+) bytes$", re.MULTILINE)


# --- running -------------------------------------------------------------------------


def florc_command() -> list[str]:
    exe = Path(sys.executable).with_name("florc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "florc"]


LAST_CPU_S = [0.0]  # CPU seconds (user + system) of the last command `timed` ran


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, str, str]:
    """Run cmd (with env added to the environment); its wall-clock seconds and output. Its CPU
    seconds land in LAST_CPU_S."""
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
        env={**os.environ, **env} if env else None,
    )
    elapsed = time.perf_counter() - t0
    LAST_CPU_S[0] = children_cpu() - cpu0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(
            f"benchmark: `{' '.join(cmd)}` (in {cwd}) failed with exit code {proc.returncode}"
        )
    return elapsed, proc.stdout, proc.stderr


def fresh_copy(parent: Path, workload: Workload, tag: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=parent))
    shutil.copy2(WORKLOADS_DIR / workload.script, folder / workload.script)
    return folder


def parse_summary(stderr: str, what: str) -> dict:
    """florc's record summary line as numbers; stops the benchmark if it is not there."""
    m = SUMMARY.search(stderr)
    if m is None:
        sys.stderr.write(stderr[-4000:])
        raise SystemExit(
            f"benchmark: florc's record summary line was not found in the output of {what}; "
            "its format changed? Update SUMMARY in benchmarks/bench_checkpoint.py"
        )
    g = m.groupdict()
    if g["status"] != "done":
        raise SystemExit(f"benchmark: {what} ended with status {g['status']!r}, not 'done'")

    def num(key: str, kind: type = float, default: float | int | None = None):
        return kind(g[key]) if g[key] is not None else default

    return {
        "line": m.group(0).removeprefix("florc: "),
        "iterations": num("iterations", int),
        "checkpoints": num("checkpoints", int),
        "skipped": num("skipped", int, 0),
        "unusable": num("unusable", int, 0),
        "logical_mb": num("logical_mb"),
        "stored_mb": num("stored_mb"),
        "unchanged_mb": num("unchanged_mb", float, 0.0),
        "cost_s": num("cost_s"),
        "training_s": num("training_s"),
        "cost_pct": num("cost_pct"),
        "writer_cpu_s": num("writer_cpu_s"),
        "florc_total_s": num("florc_total_s"),
    }


def checkpoint_health(folder: Path) -> dict:
    """How many of the run's checkpoints replay can use, read from florc's store.

    florc's summary line counts a checkpoint as taken when it is handed to the background
    writer; one the writer then fails to serialise is kept in the store as unusable (with its
    reason) but is not reported on that line, so the store is asked.
    """
    try:
        from florc.contract import START_LOOP
        from florc.store.index import Store

        store = Store(folder)
        try:
            run = store.runs()[-1]["id"]
            cps = [c for c in store.checkpoints(run) if c.loop != START_LOOP]
        finally:
            store.close()
    except Exception as exc:  # noqa: BLE001 - florc's internals may change; say so, go on
        return {"usable": None, "unusable_reasons": [f"could not read the store: {exc!r}"]}
    bad = [c for c in cps if not c.usable]
    return {
        "store_checkpoints": len(cps),
        "usable": len(cps) - len(bad),
        "unusable_reasons": sorted({str(c.info.get("reason", "?")) for c in bad}),
    }


def dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def record_run(
    parent: Path,
    florc: list[str],
    workload: Workload,
    options: list[str],
    args: list[str],
    env: dict[str, str] | None = None,
) -> dict:
    folder = fresh_copy(parent, workload, workload.name)
    cmd = [*florc, "record", *options, workload.script, *args]
    wall, out, err = timed(cmd, folder, env)
    row = {
        "wall_s": wall,
        "cpu_s": LAST_CPU_S[0],
        "stdout": out,
        "folder": folder,
        **parse_summary(err, " ".join(cmd)),
    }
    store = folder / ".florc"
    if not store.is_dir():
        raise SystemExit(
            f"benchmark: no .florc/ store in {folder} after `{' '.join(cmd)}`: florc put it "
            "elsewhere (is the temporary folder inside a git repository?), so runs would share it"
        )
    row["store_folder_bytes"] = dir_bytes(store)
    row.update(checkpoint_health(folder))
    return row


def rotated(items: tuple, k: int) -> list:
    k %= len(items)
    return list(items[k:] + items[:k])


def variant_key(variant: str | float) -> str:
    return PLAIN if variant == PLAIN else f"{variant:g}"


def overhead_repetition(
    parent: Path,
    florc: list[str],
    rep: int,
    workloads: list[Workload],
    quick: bool,
    threads: int,
    keep: bool,
) -> list[dict]:
    rows = []
    for i, w in enumerate(workloads):
        args = [*(w.quick if quick else w.full), "--threads", str(threads)]
        for position, variant in enumerate(rotated(VARIANTS, rep + i)):
            if variant == PLAIN:
                folder = fresh_copy(parent, w, w.name)
                wall, out, _ = timed([sys.executable, w.script, *args], folder)
                row = {"wall_s": wall, "cpu_s": LAST_CPU_S[0], "stdout": out, "folder": folder}
            else:
                row = record_run(parent, florc, w, ["--overhead", f"{variant:g}"], args)
            row.update(rep=rep, workload=w.name, variant=variant_key(variant), position=position)
            rows.append(row)
            if not keep:
                shutil.rmtree(row.pop("folder"), ignore_errors=True)
        mine = [r for r in rows if r["workload"] == w.name]
        print(
            f"rep {rep + 1} {w.name:14s} "
            + "  ".join(f"{r['variant']} {r['wall_s']:.2f}s" for r in mine),
            flush=True,
        )
    return rows


def storage_runs(
    parent: Path, florc: list[str], quick: bool, threads: int, keep: bool
) -> list[dict]:
    rows = []
    for workload, options, env in STORAGE_RUNS:
        args = [*(workload.quick if quick else workload.full), "--threads", str(threads)]
        row = record_run(parent, florc, workload, list(options), args, env)
        mode = " ".join(options)
        row.update(
            workload=workload.name,
            mode=mode,
            chunks="one blob per tensor" if env else "1 MiB chunks",
        )
        if workload is FROZEN:
            m = FROZEN_SIZES.search(row["stdout"])
            if m is None:
                raise SystemExit("benchmark: frozen.py did not print its frozen and trained sizes")
            row.update(frozen_bytes=int(m.group(1)), trained_bytes=int(m.group(2)))
        rows.append(row)
        if not keep:
            shutil.rmtree(row.pop("folder"), ignore_errors=True)
        print(f"storage {workload.name} {mode} ({row['chunks']}): {row['line']}", flush=True)
    return rows


# --- summary -------------------------------------------------------------------------


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def unusable(row: dict) -> int:
    """Checkpoints of a record run that replay cannot use (-1: unknown)."""
    if row.get("usable") is None:
        return -1
    return row["store_checkpoints"] - row["usable"]


def worst_unusable(runs: list[dict]) -> int:
    counts = [unusable(r) for r in runs]
    return -1 if -1 in counts else max(counts)


def problems(rows: list[dict]) -> list[str]:
    """Record runs with checkpoints replay cannot use, or whose store could not be read."""
    out = []
    for r in rows:
        if "store_checkpoints" in r or "unusable_reasons" in r:
            n = unusable(r)
            if n:
                what = f"{r['workload']} {r.get('variant') or r.get('mode')}"
                if "rep" in r:
                    what += f" (rep {r['rep'] + 1})"
                count = "?" if n < 0 else f"{n} of {r['store_checkpoints']}"
                reasons = "; ".join(r["unusable_reasons"])
                out.append(f"{what}: {count} checkpoints unusable: {reasons}")
    return out


def summarize(rows: list[dict], workloads: list[Workload]) -> dict:
    """Per workload: plain time, and per florc variant the medians of the paired numbers."""
    out = {}
    for w in workloads:
        by_rep: dict[int, dict[str, dict]] = {}
        for r in rows:
            if r["workload"] == w.name:
                by_rep.setdefault(r["rep"], {})[r["variant"]] = r
        reps = sorted(by_rep)
        plain = [by_rep[k][PLAIN]["wall_s"] for k in reps]
        base = variant_key(0.0)
        entry = {
            "plain_s": {"median": median(plain), "min": min(plain), "max": max(plain)},
            "record_output_equal": all(
                by_rep[k][v]["stdout"] == by_rep[k][PLAIN]["stdout"]
                for k in reps
                for v in by_rep[k]
            ),
            "variants": {},
        }
        for v in VARIANTS[1:]:
            key = variant_key(v)
            runs = [by_rep[k][key] for k in reps]
            entry["variants"][key] = {
                "budget": v,
                "record_s": median([r["wall_s"] for r in runs]),
                "overhead": median(
                    [by_rep[k][key]["wall_s"] / by_rep[k][PLAIN]["wall_s"] - 1 for k in reps]
                ),
                # CPU time (user + system, all threads): less disturbed by other work on the
                # machine than wall-clock time; counts the writer's CPU even when a core is idle
                "cpu_overhead": median(
                    [by_rep[k][key]["cpu_s"] / by_rep[k][PLAIN]["cpu_s"] - 1 for k in reps]
                ),
                "overhead_s": median(
                    [by_rep[k][key]["wall_s"] - by_rep[k][PLAIN]["wall_s"] for k in reps]
                ),
                # beyond florc's fixed cost: against the budget-0 run of the same repetition
                "checkpoint_overhead": median(
                    [by_rep[k][key]["wall_s"] / by_rep[k][base]["wall_s"] - 1 for k in reps]
                ),
                "checkpoints": median([r["checkpoints"] for r in runs]),
                "skipped": median([r["skipped"] for r in runs]),
                "unusable": worst_unusable(runs),
                "policy_cost_pct": median([r["cost_pct"] for r in runs]),
                "policy_cost_s": median([r["cost_s"] for r in runs]),
                "policy_training_s": median([r["training_s"] for r in runs]),
                "logical_mb": median([r["logical_mb"] for r in runs]),
                "stored_mb": median([r["stored_mb"] for r in runs]),
            }
        out[w.name] = entry
    return out


def targets(summary: dict) -> dict:
    within, within_ckpt, at_default = [], [], {}
    for name, entry in summary.items():
        for key in map(variant_key, BUDGETS):
            v = entry["variants"][key]
            if v["overhead"] > v["budget"]:
                within.append(f"{name} at {v['budget']:.0%}: {v['overhead']:+.1%}")
            if v["checkpoint_overhead"] > v["budget"]:
                within_ckpt.append(f"{name} at {v['budget']:.0%}: {v['checkpoint_overhead']:+.1%}")
        at_default[name] = entry["variants"][variant_key(DEFAULT_BUDGET)]["overhead"]
    return {
        "within_budget": not within,
        "over_budget": within,
        "checkpoint_overhead_within_budget": not within_ckpt,
        "checkpoint_over_budget": within_ckpt,
        "overhead_at_default": at_default,
        "default_target_met": all(o <= DEFAULT_TARGET for o in at_default.values()),
        "median_over_workloads_at_default": median(list(at_default.values())),
        "record_output": "OK"
        if all(e["record_output_equal"] for e in summary.values())
        else "MISMATCH",
    }


# --- report --------------------------------------------------------------------------


def machine(threads: int) -> dict:
    model = None
    mem_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass

    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": model or platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gib": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "florc": version("florc"),
        "torch_threads": threads,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


def pct(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "–"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def checkpoints_cell(taken: float | None, bad: int) -> str:
    if bad == 0:
        return num(taken)
    return f"{num(taken)} (**{'?' if bad < 0 else bad} unusable**)"


def load(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def num(x: float | None) -> str:
    return "–" if x is None else f"{x:g}"


def overhead_table(summary: dict) -> list[str]:
    lines = [
        "| workload | plain (s), median [min–max] | florc fixed cost (budget 0) | budget "
        "| record (s) | overhead | CPU-time overhead | beyond budget 0 | policy-reported cost "
        "| checkpoints | skipped | within budget |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in summary.items():
        p = e["plain_s"]
        fixed = e["variants"][variant_key(0.0)]
        first = [
            name,
            f"{p['median']:.2f} [{p['min']:.2f}–{p['max']:.2f}]",
            f"{pct(fixed['overhead'])} ({fixed['overhead_s']:+.2f} s)",
        ]
        for key in map(variant_key, BUDGETS):
            v = e["variants"][key]
            reported = None if v["policy_cost_pct"] is None else v["policy_cost_pct"] / 100
            cells = [
                *first,
                f"{v['budget']:.0%}",
                f"{v['record_s']:.2f}",
                pct(v["overhead"]),
                pct(v["cpu_overhead"]),
                pct(v["checkpoint_overhead"]),
                pct(reported, signed=False),
                checkpoints_cell(v["checkpoints"], v["unusable"]),
                num(v["skipped"]),
                "yes" if v["overhead"] <= v["budget"] else "**no**",
            ]
            lines.append("| " + " | ".join(cells) + " |")
            first = ["", "", ""]
    return lines


def storage_table(rows: list[dict]) -> list[str]:
    lines = [
        "| workload | record options | tensors stored as | checkpoints | usable by replay "
        "| logical (MB) | not copied (MB) | stored (MB) | logical ÷ stored | .florc/ folder (MB) "
        "| record (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["logical_mb"] / r["stored_mb"] if r["stored_mb"] else None
        usable = "?" if r.get("usable") is None else f"{r['usable']} of {r['store_checkpoints']}"
        if unusable(r):
            usable = f"**{usable}**"
        lines.append(
            f"| {r.get('workload', FROZEN.name)} | `{r['mode']}` | {r.get('chunks', '?')} "
            f"| {r['checkpoints']} | {usable} "
            f"| {r['logical_mb']:.1f} | {num(r.get('unchanged_mb'))} | {r['stored_mb']:.1f} "
            f"| {'–' if ratio is None else f'{ratio:.1f}×'} | {r['store_folder_bytes'] / 1e6:.1f} "
            f"| {r['wall_s']:.2f} |"
        )
    return lines


def raw_table(rows: list[dict]) -> list[str]:
    keys = [variant_key(v) for v in VARIANTS]
    head = ["plain" if k == PLAIN else f"budget {k}" for k in keys]
    lines = ["| rep | workload | run order | " + " | ".join(head) + " |"]
    lines.append("|---|---|---|" + "---|" * len(keys))
    cells: dict[tuple[int, str], dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["rep"], r["workload"]), {})[r["variant"]] = r
    for (rep, name), runs in cells.items():
        order = " → ".join(
            ("plain" if k == PLAIN else k) for k in sorted(runs, key=lambda k: runs[k]["position"])
        )
        times = " | ".join(f"{runs[k]['wall_s']:.2f}" for k in keys)
        lines.append(f"| {rep + 1} | {name} | {order} | {times} |")
    return lines


def markdown(result: dict) -> str:
    m, s, t = result["machine"], result["summary"], result["targets"]
    storage = result["storage"]
    reps = result["reps"]
    yes = {True: "**yes**", False: "**no**"}
    frozen = storage[0]
    plains = [e["plain_s"]["median"] for e in s.values()]
    lines = [
        BEGIN,
        "## Checkpoint engine: record overhead and storage",
        "",
        "Written by `make bench` (`benchmarks/bench_checkpoint.py`, also in "
        f"`{result['json']}`); rerun it to refresh. Nothing here is written by hand.",
        "",
        *(
            [
                "**QUICK MODE (`--quick`): shrunken workloads, one repetition. These numbers "
                "only show that the benchmark runs; they say nothing about florc's overhead.**",
                "",
            ]
            if result["quick"]
            else []
        ),
        "### Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['cpu_count']} logical CPUs ({m['cpus_usable']} usable), "
        f"{m['memory_gib']} GiB memory",
        f"- {m['platform']}",
        f"- Python {m['python']}, torch {m['torch']}, florc {m['florc']}; the workloads train "
        f"with `torch.set_num_threads({m['torch_threads']})`",
        "- Load average (1, 5, 15 min) when the benchmark started: "
        f"{load(m['load_average_at_start'])}; at its end: {load(result['load_average_at_end'])}",
        f"- Date: {m['date']}; the whole benchmark took {result['bench_seconds'] / 60:.1f} min",
        "",
        "### Method",
        "",
        "Overhead workloads (`benchmarks/workloads/`, seeded, synthetic data, CPU):",
        "",
        *[f"- `{w['script']} {' '.join(w['args'])}`: {w['what']}" for w in result["workloads"]],
        "",
        f"{'Each of the ' + str(reps) + ' repetitions' if reps > 1 else 'The one repetition'} "
        "runs, for each workload, `python W.py` (plain), "
        "`florc record --overhead 0 W.py` (florc with a zero budget: instrumentation, the "
        "import hook and the per-iteration policy checks, but no checkpoint) and "
        "`florc record --overhead B W.py` for B = "
        f"{', '.join(f'{b:g}' for b in BUDGETS)}; the order of these five runs is rotated from "
        "one repetition and workload to the next (see the raw times). Every run is a separate "
        "process on a fresh copy of the script in its own temporary folder (so each record "
        "starts with an empty `.florc/` store), timed by wall clock from the benchmark: "
        "python start-up, `import torch`, the script's setup and its training, plus, for "
        "florc, compiling the script and writing the store. "
        "**overhead** = record time ÷ plain time of the same repetition − 1; "
        "**CPU-time overhead** = the same ratio of CPU seconds (user + system, every thread, "
        "from `getrusage` of the child process): less disturbed by other work on a shared "
        "machine than wall-clock time, and it counts the writer thread's CPU even when it ran "
        "on an otherwise idle core; "
        "**beyond budget 0** = record time ÷ the budget-0 run of the same repetition − 1 "
        "(the checkpoints' share, without florc's fixed cost); medians over repetitions. "
        "**policy-reported cost** is the cost florc's policy accounted for, as a fraction of "
        "the main loop's training time (from florc's summary line; the budget applies to it). "
        "Checkpoints and skipped opportunities are medians too.",
        "",
        "The budget is a fraction of training time inside the main loop, while the wall-clock "
        "overhead is measured against the whole process, start-up included; florc's fixed cost "
        "(the budget-0 column) is paid once per run whatever the budget, so it weighs less on "
        f"longer runs (plain runs took {min(plains):.1f}–{max(plains):.1f} s here, medians). "
        "Run-to-run noise on a shared machine is of the order of the plain runs' "
        "min–max spread, which bounds how finely these medians can be read.",
        "",
        "### Record overhead",
        "",
        *overhead_table(s),
        "",
        "Targets:",
        "",
        f"- Wall-clock overhead within the budget, every workload and budget: "
        f"{yes[t['within_budget']]}"
        + (f" (over: {'; '.join(t['over_budget'])})" if t["over_budget"] else ""),
        f"- The checkpoints' share alone (beyond budget 0) within the budget: "
        f"{yes[t['checkpoint_overhead_within_budget']]}"
        + (
            f" (over: {'; '.join(t['checkpoint_over_budget'])})"
            if t["checkpoint_over_budget"]
            else ""
        ),
        f"- Median overhead at the default {DEFAULT_BUDGET:.0%} budget ≤ {DEFAULT_TARGET:.0%} "
        f"on each workload: {yes[t['default_target_met']]} ("
        + ", ".join(f"{k} {pct(v)}" for k, v in t["overhead_at_default"].items())
        + f"; median over workloads {pct(t['median_over_workloads_at_default'])})",
        f"- florc must not change what the scripts print (every record's output equals the "
        f"plain run's): **{t['record_output']}**",
        "- Every checkpoint a record run took is usable by replay (florc's store says so; the "
        f"summary line does not report checkpoints the writer failed to serialise): "
        f"{yes[not result['problems']]}",
        *[f"  - {p}" for p in result["problems"]],
        "",
        "Raw wall-clock times (s):",
        "",
        *raw_table(result["raw"]),
        "",
        "### Storage: a frozen backbone and an embedding, with and without chunks",
        "",
        f"- `{FROZEN.script} {' '.join(result['frozen_args'])}`: {FROZEN.what}. Frozen "
        f"parameters {frozen['frozen_bytes'] / 1e6:.1f} MB, trained parameters "
        f"{frozen['trained_bytes'] / 1e6:.2f} MB.",
        f"- `{EMBEDDING.script} {' '.join(result['embedding_args'])}`: {EMBEDDING.what}.",
        "",
        "Recorded once per row, each in a fresh folder; \"one blob per tensor\" is the layout "
        "before chunking (`FLORC_CHUNK_BYTES=0`). **logical** is what the run's checkpoints hold "
        "(each as if stored alone: what the run would take without sharing identical bytes); "
        "**not copied** is what capture skipped as unchanged since an earlier checkpoint; "
        "**stored** is the bytes of the distinct blobs on disk (florc's summary line, 1 MB = 10⁶ "
        "bytes); the `.florc/` folder adds the SQLite index.",
        "",
        *storage_table(storage),
        "",
        *(
            [
                "Unusable checkpoints are in the store with 0 logical bytes, so **logical** "
                "undercounts what the run took; see the problems listed above.",
                "",
            ]
            if any(unusable(r) for r in storage)
            else []
        ),
        "florc's summary lines:",
        "",
        *[
            f"- {r.get('workload', FROZEN.name)} `{r['mode']}` ({r.get('chunks', '?')}): "
            f"{r['line']}"
            for r in storage
        ],
        END,
    ]
    return "\n".join(lines) + "\n"


def strip(row: dict) -> dict:
    """A run's record for the JSON file: no captured output, folders as text."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in row.items() if k != "stdout"}


def replace_section(document: str, section: str) -> str:
    """`section` (markers included) in place of the marked block of `document`, else appended."""
    start, end = document.find(BEGIN), document.find(END)
    if start == -1 and end == -1:
        return document.rstrip("\n") + "\n\n" + section if document.strip() else section
    if start == -1 or end == -1 or end < start:
        raise SystemExit(f"benchmark: {RESULTS_MD} has a broken {BEGIN} ... {END} block")
    tail = document[end + len(END) :].removeprefix("\n")
    return document[:start] + section + tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the workloads")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small workloads, one repetition; results to benchmarks/scratch/, not RESULTS.md",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args()
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1 or (reps < 3 and not args.quick):
        parser.error("--reps must be at least 3 (or use --quick)")

    florc = florc_command()
    info = machine(args.threads)
    workloads = list(OVERHEAD_WORKLOADS)
    parent = Path(tempfile.mkdtemp(prefix="florc-bench-ckpt-"))
    rows: list[dict] = []
    t_start = time.perf_counter()
    try:
        # Untimed: warm the file caches and florc's bytecode before anything is timed.
        warm = fresh_copy(parent, OVERHEAD_WORKLOADS[0], "warmup")
        tiny = [OVERHEAD_WORKLOADS[0].script, "--epochs", "1", "--batches", "2"]
        timed([sys.executable, *tiny], warm)
        timed([*florc, "record", *tiny], warm)
        for rep in range(reps):
            rows += overhead_repetition(
                parent, florc, rep, workloads, args.quick, args.threads, args.keep
            )
        storage = storage_runs(parent, florc, args.quick, args.threads, args.keep)
    finally:
        if args.keep:
            print(f"kept the temporary folders in {parent}")
        else:
            shutil.rmtree(parent, ignore_errors=True)

    summary = summarize(rows, workloads)
    json_path, md_path = (QUICK_JSON, QUICK_MD) if args.quick else (RESULTS_JSON, RESULTS_MD)
    result = {
        "quick": args.quick,
        "json": str(json_path.relative_to(HERE.parent)),
        "machine": info,
        "reps": reps,
        "budgets": list(BUDGETS),
        "workloads": [
            {
                "name": w.name,
                "script": f"benchmarks/workloads/{w.script}",
                "args": [*(w.quick if args.quick else w.full), "--threads", str(args.threads)],
                "what": w.what,
            }
            for w in workloads
        ],
        "frozen_args": [
            *(FROZEN.quick if args.quick else FROZEN.full),
            "--threads",
            str(args.threads),
        ],
        "embedding_args": [
            *(EMBEDDING.quick if args.quick else EMBEDDING.full),
            "--threads",
            str(args.threads),
        ],
        "summary": summary,
        "targets": targets(summary),
        "problems": problems(rows + storage),
        "storage": [strip(r) for r in storage],
        "raw": [strip(r) for r in rows],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "bench_seconds": time.perf_counter() - t_start,
    }
    section = markdown(result)
    print()
    print(section)

    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    if args.quick:
        md_path.write_text(section)
    else:
        old = md_path.read_text() if md_path.exists() else ""
        md_path.write_text(replace_section(old, section))
    print(
        f"wrote {json_path.relative_to(HERE.parent)} and {md_path.relative_to(HERE.parent)}"
        + (" (quick: benchmarks/RESULTS.md left alone)" if args.quick else "")
    )
    for line in result["problems"]:
        print(f"benchmark: problem: {line}", file=sys.stderr)
    ok = result["targets"]["record_output"] == "OK" and not result["problems"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
