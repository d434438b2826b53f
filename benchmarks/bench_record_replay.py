"""Benchmark: what `florc record` costs and what `florc replay` saves, in wall-clock time.

Workload: benchmarks/workloads/mlp10.py, a 10-epoch MLP training script (single-threaded,
seeded). For each repetition, in order and each in a fresh temporary project folder (its own
`git init`, so florc uses it as the project root):

  startup       python -c "import torch"                     (interpreter + torch import)
  setup         python mlp10.py --epochs 0                   (everything before the first epoch)
  plain         python mlp10.py                              (the unmodified script)
  record        florc record mlp10.py                        (same script, checkpointing)
  replay        add an epoch-level print, then florc replay mlp10.py --epochs 6-10
  plain_edited  python mlp10.py on the edited script          (the reference for the new print)

Repetitions run one after another (plain, record, replay, plain, record, replay, ...), so slow
drifts of the machine hit every kind of run alike; medians are reported. The replay's hindsight
lines must equal the plain edited run's lines for epochs 6-10 (OK / MISMATCH), and the record's
output must equal the plain run's (florc must not change what the script prints).

Writes benchmarks/RESULTS.md and benchmarks/results/record_replay.json.
Usage: python benchmarks/bench_record_replay.py [--reps N] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "mlp10.py"
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_JSON = HERE / "results" / "record_replay.json"

EPOCHS = 10
REPLAY_EPOCHS = (6, 10)
ANCHOR = (
    '    print(f"epoch {epoch} loss {total_loss / args.samples:.6f} '
    'acc {correct / args.samples:.4f}")\n'
)
HINDSIGHT = '    print(f"hindsight epoch {epoch} w0_norm {model[0].weight.norm().item():.6f}")\n'
KINDS = ["startup", "setup", "plain", "record", "replay", "plain_edited"]


def florc_command() -> list[str]:
    exe = Path(sys.executable).with_name("florc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "florc"]


def timed(cmd: list[str], cwd: Path) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(
            f"benchmark: `{' '.join(cmd[-3:])}` failed with exit code {proc.returncode}"
        )
    return elapsed, proc.stdout, proc.stderr


def new_project(parent: Path, name: str, edited: bool = False) -> Path:
    folder = parent / name
    folder.mkdir()
    source = WORKLOAD.read_text()
    if edited:
        source = add_hindsight_print(source)
    (folder / "mlp10.py").write_text(source)
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    return folder


def add_hindsight_print(source: str) -> str:
    if source.count(ANCHOR) != 1:
        raise SystemExit("benchmark: the per-epoch print in mlp10.py was not found")
    return source.replace(ANCHOR, ANCHOR + HINDSIGHT)


def hindsight_lines(stdout: str, first: int, last: int) -> list[str]:
    out = []
    for line in stdout.splitlines():
        m = re.match(r"hindsight epoch (\d+) ", line)
        if m and first <= int(m.group(1)) <= last:
            out.append(line)
    return out


def store_bytes(project: Path) -> int:
    return sum(p.stat().st_size for p in (project / ".florc").rglob("*") if p.is_file())


def one_repetition(parent: Path, rep: int, florc: list[str]) -> dict:
    py = sys.executable
    row: dict = {"rep": rep}
    scratch = new_project(parent, f"rep{rep}-scratch")
    row["startup"], _, _ = timed([py, "-c", "import torch"], scratch)
    row["setup"], _, _ = timed([py, "mlp10.py", "--epochs", "0"], scratch)

    plain_dir = new_project(parent, f"rep{rep}-plain")
    row["plain"], plain_out, _ = timed([py, "mlp10.py"], plain_dir)

    rec_dir = new_project(parent, f"rep{rep}-florc")
    row["record"], record_out, record_err = timed(florc + ["record", "mlp10.py"], rec_dir)
    row["record_output_equal"] = record_out == plain_out
    m = re.search(r"checkpointing (?:took|cost) ([\d.]+) s of ([\d.]+) s", record_err)
    row["record_checkpoint_s"] = float(m.group(1)) if m else None
    row["record_script_s"] = float(m.group(2)) if m else None
    m = re.search(r"(\d+) checkpoints \(", record_err)
    row["checkpoints"] = int(m.group(1)) if m else None
    row["store_bytes"] = store_bytes(rec_dir)

    script = rec_dir / "mlp10.py"
    script.write_text(add_hindsight_print(script.read_text()))
    spec = f"{REPLAY_EPOCHS[0]}-{REPLAY_EPOCHS[1]}"
    row["replay"], replay_out, replay_err = timed(
        florc + ["replay", "mlp10.py", "--epochs", spec], rec_dir
    )
    row["replay_summary"] = next(
        (ln.removeprefix("florc: ") for ln in replay_err.splitlines() if " done in " in ln), ""
    )
    m = re.search(r" done in ([\d.]+) s", replay_err)
    row["replay_script_s"] = float(m.group(1)) if m else None

    edited_dir = new_project(parent, f"rep{rep}-edited", edited=True)
    row["plain_edited"], edited_out, _ = timed([py, "mlp10.py"], edited_dir)

    want = hindsight_lines(edited_out, *REPLAY_EPOCHS)
    got = hindsight_lines(replay_out, 1, EPOCHS)
    row["replay_lines"] = len(got)
    row["replay_output_equal"] = bool(want) and got == want
    if not row["replay_output_equal"]:
        row["replay_expected"], row["replay_got"] = want, got
    return row


def machine() -> dict:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
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
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "florc": version("florc"),
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    }


def summarize(rows: list[dict]) -> dict:
    med = {k: statistics.median(r[k] for r in rows) for k in KINDS}
    plain, setup, startup = med["plain"], med["setup"], med["startup"]
    train = plain - setup

    def paired(num: str, den: str) -> float:
        return statistics.median(r[num] / r[den] for r in rows)

    def median_of(key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(values) if values else None

    return {
        "median_s": med,
        "paired_record_over_plain": paired("record", "plain"),
        "paired_replay_over_plain": paired("replay", "plain"),
        "median_replay_script_s": median_of("replay_script_s"),
        "median_record_script_s": median_of("record_script_s"),
        "record_over_plain": med["record"] / plain,
        "replay_over_plain": med["replay"] / plain,
        "replay_minus_startup_s": med["replay"] - startup,
        "plain_minus_startup_s": plain - startup,
        "replay_minus_startup_over_plain_minus_startup": (med["replay"] - startup)
        / (plain - startup),
        "training_s": train,
        "record_overhead_s": med["record"] - plain,
        "record_overhead_over_training": (med["record"] - plain) / train,
        "replay_minus_setup_s": med["replay"] - setup,
        "replay_minus_setup_over_training": (med["replay"] - setup) / train,
        "median_record_checkpoint_s": statistics.median(
            r["record_checkpoint_s"] for r in rows if r["record_checkpoint_s"] is not None
        ),
        "median_store_mb": statistics.median(r["store_bytes"] for r in rows) / 1e6,
        "checkpoints": rows[0]["checkpoints"],
        "replay_output": "OK" if all(r["replay_output_equal"] for r in rows) else "MISMATCH",
        "record_output": "OK" if all(r["record_output_equal"] for r in rows) else "MISMATCH",
    }


def write_markdown(info: dict, summary: dict, rows: list[dict], reps: int) -> str:
    m, s = info, summary["median_s"]
    su = summary
    lines = [
        "# florc record / replay benchmark",
        "",
        "Written by `make bench` (`benchmarks/bench_record_replay.py`); rerun it to refresh.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['cpu_count']} logical CPUs ({m['cpus_usable']} usable)",
        f"- {m['platform']}",
        f"- Python {m['python']}, torch {m['torch']}, florc {m['florc']}",
        f"- Date: {m['date']}",
        "",
        "## Method",
        "",
        (
            f"Workload: `benchmarks/workloads/mlp10.py`, a {EPOCHS}-epoch MLP "
            "(128 → 512 → 512 → 10, 12288 synthetic samples, batch 128, SGD with momentum), "
            "`torch.set_num_threads(1)`, seeded. Every run is a separate subprocess in a fresh "
            "temporary project folder (its own `git init`), timed by wall clock from the "
            "benchmark process. "
            f"{reps} repetitions, run one after another, each in this order:"
        ),
        "",
        "| run | command |",
        "|---|---|",
        '| startup | `python -c "import torch"` |',
        "| setup | `python mlp10.py --epochs 0` (imports, data, model, optimizer; no epoch) |",
        "| plain | `python mlp10.py` |",
        "| record | `florc record mlp10.py` |",
        (
            '| replay | add `print(f"hindsight epoch {epoch} w0_norm ...")` after the epoch\'s '
            f"print, then `florc replay mlp10.py --epochs {REPLAY_EPOCHS[0]}-{REPLAY_EPOCHS[1]}` |"
        ),
        "| plain_edited | `python mlp10.py` with the same print added (the reference output) |",
        "",
        (
            f"Check: the replay's hindsight lines must equal the plain edited run's for epochs "
            f"{REPLAY_EPOCHS[0]}–{REPLAY_EPOCHS[1]}: **{su['replay_output']}**. "
            f"The record's output must equal the plain run's: **{su['record_output']}**."
        ),
        "",
        "## Medians",
        "",
        "| run | median (s) |",
        "|---|---|",
        *[f"| {k} | {s[k]:.2f} |" for k in KINDS],
        "",
        "| ratio | value |",
        "|---|---|",
        f"| record ÷ plain | {su['record_over_plain']:.2f} |",
        f"| replay ÷ plain (target ≤ 0.2) | {su['replay_over_plain']:.2f} |",
        (
            f"| same two ratios, median of each repetition's own ratio | "
            f"{su['paired_record_over_plain']:.2f} and {su['paired_replay_over_plain']:.2f} |"
        ),
        f"| replay − startup | {su['replay_minus_startup_s']:.2f} s |",
        (
            f"| (replay − startup) ÷ (plain − startup) | "
            f"{su['replay_minus_startup_over_plain_minus_startup']:.2f} |"
        ),
        f"| training time in a plain run (plain − setup) | {su['training_s']:.2f} s |",
        (
            f"| record overhead (record − plain) | {su['record_overhead_s']:.2f} s "
            f"({100 * su['record_overhead_over_training']:.0f}% of training time) |"
        ),
        (
            f"| replay beyond setup (replay − setup) ÷ training time | "
            f"{su['replay_minus_setup_over_training']:.2f} |"
        ),
        (
            f"| checkpointing time florc reports during record | "
            f"{su['median_record_checkpoint_s']:.2f} s |"
        ),
        (
            f"| store after record | {su['checkpoints']} checkpoints, "
            f"{su['median_store_mb']:.1f} MB |"
        ),
        (
            f'| replay: time florc reports for running the script (its "done in") | '
            f"{su['median_replay_script_s']:.2f} s of {s['replay']:.2f} s |"
        ),
        "",
        (
            "Start-up (python + `import torch`) and the script's own setup are paid by every run, "
            "so for a workload this short they bound what replay can save; the ratios without "
            "them show what it saves on the training itself."
        ),
        "",
        "## Raw times (s)",
        "",
        "| rep | " + " | ".join(KINDS) + " | replay check |",
        "|---|" + "---|" * (len(KINDS) + 1),
        *[
            f"| {r['rep']} | "
            + " | ".join(f"{r[k]:.2f}" for k in KINDS)
            + f" | {'OK' if r['replay_output_equal'] else 'MISMATCH'} |"
            for r in rows
        ],
        "",
        "florc's own summary of each replay:",
        "",
        *[f"- rep {r['rep']}: {r['replay_summary']}" for r in rows],
        "",
    ]
    return "\n".join(lines)


def marked_sections() -> str:
    """Sections other benchmarks keep in RESULTS.md between `<!-- NAME:begin -->` and
    `<!-- NAME:end -->` (bench_checkpoint.py's), carried over when this file is rewritten."""
    old = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    blocks = re.finditer(r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->\n?", old, re.DOTALL)
    return "".join("\n" + m.group(0) for m in blocks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (at least 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project folders")
    args = parser.parse_args()
    if args.reps < 3:
        parser.error("--reps must be at least 3")

    florc = florc_command()
    info = machine()
    parent = Path(tempfile.mkdtemp(prefix="florc-bench-"))
    rows: list[dict] = []
    t_start = time.perf_counter()
    try:
        # One untimed plain run first, so that file caches are warm for everything timed.
        warm = new_project(parent, "warmup")
        timed([sys.executable, "mlp10.py", "--epochs", "1"], warm)
        for rep in range(1, args.reps + 1):
            row = one_repetition(parent, rep, florc)
            rows.append(row)
            print(
                f"rep {rep}/{args.reps}: "
                + "  ".join(f"{k} {row[k]:.2f}s" for k in KINDS)
                + f"  replay check {'OK' if row['replay_output_equal'] else 'MISMATCH'}",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept the project folders in {parent}")
        else:
            shutil.rmtree(parent, ignore_errors=True)

    summary = summarize(rows)
    s = summary["median_s"]
    print(
        f"\nmedians over {args.reps} repetitions: plain {s['plain']:.2f}s, "
        f"record {s['record']:.2f}s, replay {s['replay']:.2f}s, startup {s['startup']:.2f}s, "
        f"setup {s['setup']:.2f}s"
    )
    print(
        f"record / plain = {summary['record_over_plain']:.2f}   "
        f"replay / plain = {summary['replay_over_plain']:.2f} (target <= 0.2)   "
        f"replay - startup = {summary['replay_minus_startup_s']:.2f}s   "
        f"(replay - setup) / training = {summary['replay_minus_setup_over_training']:.2f}"
    )
    print(
        f"replay output vs plain run: {summary['replay_output']}   "
        f"record output vs plain run: {summary['record_output']}"
    )

    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(
        json.dumps(
            {
                "machine": info,
                "workload": "benchmarks/workloads/mlp10.py",
                "epochs": EPOCHS,
                "replay_epochs": f"{REPLAY_EPOCHS[0]}-{REPLAY_EPOCHS[1]}",
                "reps": args.reps,
                "summary": summary,
                "raw": rows,
                "bench_seconds": time.perf_counter() - t_start,
            },
            indent=1,
        )
        + "\n"
    )
    RESULTS_MD.write_text(write_markdown(info, summary, rows, args.reps) + marked_sections())
    print(
        f"wrote {RESULTS_MD.relative_to(HERE.parent)} and {RESULTS_JSON.relative_to(HERE.parent)}"
    )
    ok = summary["replay_output"] == "OK" and summary["record_output"] == "OK"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
