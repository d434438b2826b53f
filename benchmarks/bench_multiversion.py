"""Multiversion hindsight: one new log statement, values for four recorded runs of two versions.

A developer recorded a training script four times over two versions of its code, then adds a
log statement to the current version and wants its values for every run. The workload is
`workloads/digits_cnn.py` (a small CNN on scikit-learn's digits):

  run 1  version 1, --channels 16
  run 2  version 1, --channels 24
  run 3  version 2 (a dropout layer added to the model), --channels 16
  run 4  version 2, --channels 16 --batch-size 64

The statement, added at the end of the epoch in version 2 (the current one):
  print(f"HINDSIGHT {epoch} {float(model.head.weight.norm())!r}")

Measured, in one run on one machine, each timed from the command line:
  retrain   a plain `python` run of each version with the statement added (the reference values,
            and the plain alternative: retrain every run), summed over the four runs
  florc     `florc replay digits_cnn.py --runs all --epochs all`: florc places the statement into
            each run's recorded sources and replays each from its own checkpoints, runs in
            parallel (one run per core); also with --epochs last
  flordb    FlorDB 4.0.1's multiversion replay (`python -m flordb replay --apply h`): it checks
            out each recorded version, splices the statement in, and re-executes it from
            iteration 0 (FlorDB's statement is `flor.log("h", float(...))`, same expression)
Exactness: every value of every run compared with the retrain reference (florc: the printed
line's value text; FlorDB: repr of the logged float).

Writes benchmarks/results/multiversion.json and the section between
`<!-- multiversion:begin -->` and `<!-- multiversion:end -->` of RESULTS.md.
Usage: python benchmarks/bench_multiversion.py [--epochs N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_suite import (
    EPOCH_LOOP,
    RESULTS_DIR,
    RESULTS_MD,
    WORKLOADS_DIR,
    FlorLoop,
    florc_command,
    machine,
    replace_section,
)
from peer_flordb import GIT_IDENTITY, FlorDBProject, annotate

SCRIPT = "digits_cnn.py"
ANCHOR = 'print(f"epoch {epoch} loss {total_loss / len(train_x):.4f} test_acc {accuracy:.4f}")'
EXPR = "float(model.head.weight.norm())"
PRINT = f'print(f"HINDSIGHT {{epoch}} {{{EXPR}!r}}")'
FLOR = f'flor.log("h", {EXPR})'
LOOPS = [EPOCH_LOOP, FlorLoop("for xb, yb in train_loader:", "step")]


def version(n: int) -> str:
    """The workload's source as version n (1: as shipped; 2: a dropout layer added)."""
    src = (WORKLOADS_DIR / SCRIPT).read_text()
    if n == 1:
        return src
    head = "        self.head = nn.Linear(2 * channels * 4 * 4, 10)\n"
    ret = "        return self.head(x.flatten(1))\n"
    out = src.replace(head, head + "        self.drop = nn.Dropout(0.1)\n")
    out = out.replace(ret, ret.replace("x.flatten(1)", "self.drop(x.flatten(1))"))
    assert out != src and out.count("self.drop") == 2
    return out


def with_statement(source: str, code: str) -> str:
    lines = source.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip() == ANCHOR]
    assert len(hits) == 1, ANCHOR
    indent = lines[hits[0]][: len(lines[hits[0]]) - len(lines[hits[0]].lstrip())]
    lines.insert(hits[0] + 1, indent + code + "\n")
    return "".join(lines)


def runs_plan(epochs: int) -> list[tuple[int, list[str]]]:
    base = ["--epochs", str(epochs)]
    return [
        (1, [*base, "--channels", "16"]),
        (1, [*base, "--channels", "24"]),
        (2, [*base, "--channels", "16"]),
        (2, [*base, "--channels", "16", "--batch-size", "64"]),
    ]


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
    return seconds, proc.stdout, proc.stderr


def hindsight(stdout: str) -> list[tuple[int, str]]:
    out = []
    for line in stdout.splitlines():
        if line.startswith("HINDSIGHT "):
            _, epoch, value = line.split()
            out.append((int(epoch), value))
    return out


def git(folder: Path, *args: str) -> None:
    env = {**os.environ, **GIT_IDENTITY}
    subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)


def florc_replayed(folder: Path) -> dict[int, list[tuple[int, str]]]:
    """The new statement's lines each recorded run's latest replay stored, by recorded run."""
    db = sqlite3.connect(folder / ".florc" / "florc.db")
    try:
        rows = db.execute(
            "SELECT runs.parent, runs.id, logs.value FROM logs JOIN runs ON runs.id = logs.run"
            " WHERE runs.kind = 'replay' AND logs.new = 1 ORDER BY logs.run, logs.id"
        ).fetchall()
    finally:
        db.close()
    latest: dict[int, int] = {}
    for parent, replay, _ in rows:
        latest[parent] = max(latest.get(parent, 0), replay)
    out: dict[int, list[tuple[int, str]]] = {}
    for parent, replay, value in rows:
        if replay == latest[parent]:
            out.setdefault(parent, []).extend(hindsight(value))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    a = ap.parse_args()
    plan = runs_plan(a.epochs)
    tmp = Path(tempfile.mkdtemp(prefix="florc-multiversion-"))
    result: dict = {"command": "python benchmarks/bench_multiversion.py", "epochs": a.epochs,
                    "machine": machine(), "runs": [], "rows": []}
    t_start = time.perf_counter()
    try:
        # the reference: each version with the statement, run plainly
        reference: list[list[tuple[int, str]]] = []
        retrain = 0.0
        for i, (v, args) in enumerate(plan):
            folder = tmp / f"retrain-{i}"
            folder.mkdir()
            (folder / SCRIPT).write_text(with_statement(version(v), PRINT))
            seconds, out, _ = timed([sys.executable, SCRIPT, *args], folder)
            reference.append(hindsight(out))
            retrain += seconds
            result["runs"].append({"version": v, "args": args, "retrain_seconds": seconds,
                                   "values": len(reference[-1])})
            print(f"retrain run {i + 1}: {seconds:.1f} s, {len(reference[-1])} values", flush=True)
        result["rows"].append({"tool": "retrain (plain runs)", "seconds": retrain,
                               "exact": "4/4 (the reference)"})

        # florc: record the four runs in one git project, then one replay over all of them
        proj = tmp / "florc"
        proj.mkdir()
        git(proj, "init", "-q", "-b", "main")
        record_seconds = 0.0
        for v, args in plan:
            (proj / SCRIPT).write_text(version(v))
            git(proj, "add", "-A")
            git(proj, "commit", "-q", "--allow-empty", "-m", f"version {v}")
            seconds, _, err = timed([*florc_command(), "record", SCRIPT, *args], proj)
            record_seconds += seconds
        result["florc_record_seconds"] = record_seconds
        (proj / SCRIPT).write_text(with_statement(version(2), PRINT))
        for epochs in ("all", "last"):
            seconds, out, err = timed(
                [*florc_command(), "replay", SCRIPT, "--runs", "all", "--epochs", epochs], proj
            )
            got = florc_replayed(proj)
            exact = 0
            for i, ref in enumerate(reference):
                want = ref if epochs == "all" else ref[-1:]
                # a replay from an earlier checkpoint re-executes (and stores) epochs before the
                # ones asked for; the epochs asked for are what it shows
                shown = {e for e, _ in want}
                exact += [g for g in got.get(i + 1, []) if g[0] in shown] == want
            row = {"tool": f"florc replay --runs all --epochs {epochs}", "seconds": seconds,
                   "exact": f"{exact}/4", "runs_exact": exact,
                   "fidelity": [ln for ln in err.splitlines() if "fidelity" in ln][-4:]}
            result["rows"].append(row)
            print(json.dumps(row), flush=True)

        # FlorDB: the same four recordings, then its multiversion replay
        peer = FlorDBProject(tmp / "flordb", SCRIPT)
        flor_record = 0.0
        for v, args in plan:
            r = peer.record(annotate(version(v), LOOPS), args)
            flor_record += r.seconds
            if not r.ok:
                raise SystemExit(f"FlorDB record failed: {r.error}")
        result["flordb_record_seconds"] = flor_record
        edited = annotate(with_statement(version(2), FLOR), LOOPS)
        for epochs_label, epochs in (("all", list(range(a.epochs))), ("last", [a.epochs - 1])):
            r = peer.replay(edited, ["h"], epochs)
            by_run: dict[str, list[tuple[int, str]]] = {}
            for row in r.values:
                by_run.setdefault(row["tstamp"], []).append(
                    (int(row.get("epoch", -1)), repr(float(row["value"])))
                )
            stamps = sorted(by_run)
            exact = 0
            for i, ref in enumerate(reference):
                want = ref if epochs_label == "all" else ref[-1:]
                exact += i < len(stamps) and sorted(by_run[stamps[i]]) == want
            row = {"tool": f"FlorDB 4.0.1 replay (--iter epoch={epochs_label})",
                   "seconds": r.seconds, "exact": f"{exact}/4", "runs_exact": exact,
                   "ok": r.ok, "error": r.error}
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    finally:
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result["minutes"] = (time.perf_counter() - t_start) / 60
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "multiversion.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    doc = RESULTS_MD.read_text()
    RESULTS_MD.write_text(
        replace_section(doc, "<!-- multiversion:begin -->", "<!-- multiversion:end -->", text)
    )
    print(text)
    return 0


def note(row: dict) -> str:
    """What went wrong in a row, in a table cell."""
    text = row.get("error") or ""
    for verdict in row.get("fidelity") or []:
        if "exact" not in verdict:
            text = (text + "; " if text else "") + verdict
    return text.replace("|", "/").replace("\n", " ")[:200]


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "## Multiversion hindsight: one statement, four recorded runs of two versions",
        "",
        f"`{result['command']}` ({result['minutes']:.1f} min), {m['date']}, commit {m['commit']},"
        f" {m['cores']} cores ({m['cpu']}), torch {m['torch']}, FlorDB {m['flordb']}.",
        "",
        f"Workload `digits_cnn`, {result['epochs']} epochs per run: runs 1-2 of version 1 "
        "(`--channels 16`, `24`), runs 3-4 of version 2 (a dropout layer added; `--channels 16`,"
        " `--channels 16 --batch-size 64`). The statement (epoch level, the head's weight norm) is "
        "added to version 2; each tool places it into every run's version and replays it. "
        "Exact: the run's values equal a plain run of that version with the statement, all "
        "digits.",
        "",
        f"Recording the four runs took {result['florc_record_seconds']:.1f} s with florc and "
        f"{result['flordb_record_seconds']:.1f} s with FlorDB (sequential).",
        "",
        "| what | seconds | vs retraining | runs exact | note |",
        "|---|---:|---:|---:|---|",
    ]
    base = result["rows"][0]["seconds"]
    for row in result["rows"]:
        lines.append(
            f"| {row['tool']} | {row['seconds']:.1f} | {row['seconds'] / base:.2f}x | "
            f"{row['exact']} | {note(row)} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
