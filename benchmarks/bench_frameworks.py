"""Scripts whose training loop belongs to a framework: record overhead and replay time.

For each framework florc drives (PyTorch Lightning, Hugging Face transformers), the example
script of `examples/<framework>/` (a tiny model on seeded synthetic data, CPU), REPS times each:

  plain     `python train.py`, the script as shipped
  record    `florc record train.py` at the default overhead budget
  retrain   `python train.py` of the script with the epoch-level statement of its
            hindsight.edits added: what getting the statement's values costs without florc
  replay    `florc replay train.py --epochs 2-3` of the latest recording, with that statement

Medians of wall-clock seconds, each command from the command line (so interpreter start-up,
the framework's import and the script's own setup count, as a user pays them). Also florc's own
account of the recording: checkpointing seconds against training seconds, as `florc record`
prints it. Exact: the replay's statement lines equal the retrain's for epochs 2-3.

Writes benchmarks/results/frameworks.json and the section between
`<!-- frameworks:begin -->` and `<!-- frameworks:end -->` of RESULTS.md.
Usage: python benchmarks/bench_frameworks.py [--reps N] [--only lightning|transformers]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_suite import RESULTS_DIR, RESULTS_MD, florc_command, machine, replace_section, timed

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from helpers import apply_edits, copy_project, expected_for, hindsight_lines  # noqa: E402

FRAMEWORKS = {"lightning": "lightning", "transformers": "transformers"}  # example -> package
EPOCHS = {2, 3}
_COST = re.compile(r"checkpointing cost ([\d.]+) s of ([\d.]+) s training")


def run_framework(name: str, reps: int, tmp: Path) -> dict:
    example = REPO / "examples" / name
    project = copy_project(example, tmp / name)
    py = [sys.executable, "train.py"]
    out: dict = {"framework": name, "plain": [], "record": [], "retrain": [], "replay": [],
                 "checkpoint_seconds": [], "training_seconds": []}
    for _ in range(reps):
        out["plain"].append(timed(py, project).seconds)
    for _ in range(reps):
        rec = timed([*florc_command(), "record", "train.py"], project)
        out["record"].append(rec.seconds)
        m = _COST.search(rec.stderr)
        if m:
            out["checkpoint_seconds"].append(float(m.group(1)))
            out["training_seconds"].append(float(m.group(2)))
    apply_edits(example, "epoch", project)
    want: list[str] = []
    for _ in range(reps):
        plain = timed(py, project)
        out["retrain"].append(plain.seconds)
        want = expected_for(hindsight_lines(plain.stdout), EPOCHS)
    exact = True
    for _ in range(reps):
        rep = timed([*florc_command(), "replay", "train.py", "--epochs", "2-3"], project)
        out["replay"].append(rep.seconds)
        exact = exact and hindsight_lines(rep.stdout) == want
        out["fidelity"] = [ln for ln in rep.stderr.splitlines() if "fidelity" in ln][-1:]
    out["exact"] = exact
    out["lines"] = len(want)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "## Frameworks: PyTorch Lightning and Hugging Face transformers",
        "",
        f"`{result['command']}` ({result['minutes']:.1f} min), {m['date']}, commit {m['commit']},"
        f" {m['cores']} cores ({m['cpu']}), torch {m['torch']}; medians of {result['reps']} "
        "runs each, wall-clock seconds from the command line.",
        "",
        "The example scripts (`examples/lightning/`, `examples/transformers/`) train a tiny model "
        "for 6 epochs on synthetic data: training itself takes well under a second, so start-up "
        "(Python, the framework's import, the script's setup) is most of every number, and "
        "replay cannot beat retraining here. florc's own account of the recording "
        "(checkpointing against training time) shows the overhead budget at work.",
        "",
        "| framework | plain | record (default budget) | record ÷ plain | checkpointing / "
        "training (florc's account) | retrain with the statement | replay --epochs 2-3 | "
        "replay ÷ retrain | exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        if r.get("skipped"):
            lines.append(f"| {r['framework']} | {r['skipped']} |  |  |  |  |  |  |  |")
            continue
        ck, tr = med(r["checkpoint_seconds"]), med(r["training_seconds"])
        lines.append(
            f"| {r['framework']} | {med(r['plain']):.2f} | {med(r['record']):.2f} | "
            f"{med(r['record']) / med(r['plain']):.2f}x | {ck:.2f} s / {tr:.2f} s "
            f"({100 * ck / tr:.1f}%) | {med(r['retrain']):.2f} | {med(r['replay']):.2f} | "
            f"{med(r['replay']) / med(r['retrain']):.2f}x | "
            f"{'yes' if r['exact'] else 'NO'} ({r['lines']} lines) |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=sorted(FRAMEWORKS), action="append")
    a = ap.parse_args()
    t0 = time.perf_counter()
    result: dict = {"command": "python benchmarks/bench_frameworks.py", "reps": a.reps,
                    "machine": machine(), "rows": []}
    tmp = Path(tempfile.mkdtemp(prefix="florc-frameworks-"))
    try:
        for name in a.only or sorted(FRAMEWORKS):
            if importlib.util.find_spec(FRAMEWORKS[name]) is None:
                result["rows"].append({"framework": name, "skipped": f"{name} not installed"})
                continue
            row = run_framework(name, a.reps, tmp)
            result["rows"].append(row)
            print(json.dumps({k: row[k] for k in ("framework", "exact", "lines")}), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["minutes"] = (time.perf_counter() - t0) / 60
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "frameworks.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    doc = RESULTS_MD.read_text()
    RESULTS_MD.write_text(
        replace_section(doc, "<!-- frameworks:begin -->", "<!-- frameworks:end -->", text)
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
