"""Benchmark suite: florc against retraining and against FlorDB, on four training workloads.

What a user weighs: what recording costs, and how long a hindsight log statement takes to get
its values, compared with retraining with the statement added (the plain alternative) and with
FlorDB (PyPI `flordb`, the research system florc descends from; run through peer_flordb.py).

Workloads (benchmarks/workloads/, data that ships with a package, nothing downloaded):
  digits_cnn         a small CNN on scikit-learn's bundled digits images (epoch loop, batch loop)
  char_rnn           a character-level GRU on the standard library's sources
  transformer_iters  an iteration-based transformer trainer (`while step < iters`, random batches)
  state_heavy        stress: an 80 MB embedding table against a few batches per epoch

For each workload, in one run, on one machine:

A. Record, --reps repetitions, kinds rotated from one repetition to the next (A B C, B C A, ...):
     setup          python W.py --epochs 0       (interpreter, imports, data: the fixed cost)
     plain          python W.py                  (the unmodified script)
     florc record   florc record W.py            (default budget, 5%)
     flordb record  python W.py with FlorDB's API added as its documentation directs
   Overhead = record / plain - 1 of the same repetition, median over repetitions. Storage: what
   florc reports as stored, and the bytes on disk of each tool's folders (.florc; .flor + .git).

B. Hindsight, --replay-reps repetitions. Three statements, each added to the script in turn:
     epoch   at the end of an epoch (a model statistic)
     batch   inside the batch loop (a per-batch gradient statistic)
     after   after the main loop (a statistic of the final model)
   For each statement and repetition, in this order: a plain run of the edited script (the
   retraining alternative, and the reference values), then florc replay for one epoch (the middle
   one), the last half and all epochs (the last half and all with 1 and 2 workers), then FlorDB's
   replay of the same epochs. "after" is replayed once per tool (its value has no epoch range).
   Without --full (the quick run, about 10 minutes on 2 cores) the workloads are smaller, 2
   workers run only for all epochs and FlorDB replays only the last half.
   Every replayed value is compared with the plain run's: florc's printed lines exactly; FlorDB's
   logged floats by repr.

C. The physical floor of each replay: setup + bytes florc read from its store / the disk's read
   bandwidth (measured here with the page cache dropped for the file, posix_fadvise) + the
   statement's own compute (the edited plain run minus the plain run, pro rata for the epochs
   asked for, never below 0).

Writes benchmarks/results/suite_<mode>.json, plots benchmarks/results/suite_<mode>_*.png, and the
section between `<!-- suite-<mode>:begin -->` and `<!-- suite-<mode>:end -->` of RESULTS.md.
Usage: python benchmarks/bench_suite.py [--full] [--reps N] [--replay-reps N] [--only NAME]
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
from dataclasses import dataclass, field
from pathlib import Path

from peer_flordb import FlorDBProject, FlorLoop, annotate

HERE = Path(__file__).resolve().parent
WORKLOADS_DIR = HERE / "workloads"
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
LEVELS = ("epoch", "batch", "after")
RANGES = ("one", "half", "all")


@dataclass
class Statement:
    anchor: str  # a line of the script (stripped text, found exactly once)
    expr: str  # the value logged: float(expr)
    after: bool = True  # insert after the anchor (else before); anchor "" = end of file
    label: str = "epoch"  # the main-loop iteration the value belongs to (0-based)


@dataclass
class Workload:
    name: str
    about: str
    quick: list[str]
    full: list[str]
    epochs_flag: str
    loops: list[FlorLoop]
    statements: dict[str, Statement]
    note: str = ""

    @property
    def script(self) -> str:
        return self.name + ".py"

    def args(self, full: bool) -> list[str]:
        return self.full if full else self.quick

    def epochs(self, full: bool) -> int:
        a = self.args(full)
        return int(a[a.index(self.epochs_flag) + 1])


EPOCH_LOOP = FlorLoop("for epoch in range(args.epochs):", "epoch")
WORKLOADS = [
    Workload(
        "digits_cnn",
        "2 conv layers + linear head, SGD, scikit-learn digits (1,500 train / 297 test images)",
        quick=["--epochs", "6", "--channels", "32"],
        full=["--epochs", "10", "--channels", "48"],
        epochs_flag="--epochs",
        loops=[EPOCH_LOOP, FlorLoop("for xb, yb in train_loader:", "step")],
        statements={
            "epoch": Statement(
                'print(f"epoch {epoch} loss {total_loss / len(train_x):.4f} '
                'test_acc {accuracy:.4f}")',
                "model.head.weight.norm()",
            ),
            "batch": Statement("optimizer.step()", "model.conv1.weight.grad.norm()"),
            "after": Statement("", "model.head.weight.sum()"),
        },
    ),
    Workload(
        "char_rnn",
        "1-layer GRU language model on the standard library's sources (characters)",
        quick=["--epochs", "6", "--chars", "40000", "--hidden", "96"],
        full=["--epochs", "10", "--chars", "80000", "--hidden", "128"],
        epochs_flag="--epochs",
        loops=[
            EPOCH_LOOP,
            FlorLoop(
                "for start in range(0, n_seq - args.batch_size + 1, args.batch_size):", "step"
            ),
        ],
        statements={
            "epoch": Statement(
                'print(f"epoch {epoch} loss {total / batches:.4f}")', "model.out.weight.norm()"
            ),
            "batch": Statement("optimizer.step()", "model.rnn.weight_hh_l0.grad.norm()"),
            "after": Statement("", "model.embed.weight.sum()"),
        },
    ),
    Workload(
        "transformer_iters",
        "2-layer causal transformer, `while step < iters` over random batches, cosine LR",
        quick=["--iters", "60", "--eval-every", "10", "--dim", "48", "--chars", "30000"],
        full=["--iters", "200", "--eval-every", "25", "--dim", "64", "--chars", "60000"],
        epochs_flag="--iters",
        loops=[FlorLoop("while step < args.iters:", "epoch")],
        statements={
            "epoch": Statement("step += 1", "model.head.weight.norm()", after=False, label="step"),
            "batch": Statement(
                "optimizer.step()", "model.tok.weight.grad.norm()", after=False, label="step"
            ),
            "after": Statement("", "model.head.weight.sum()"),
        },
        note="the loop body is one batch: an 'epoch' is one iteration, and the 'epoch' and "
        "'batch' statements both sit in the loop body (after and before the optimizer step)",
    ),
    Workload(
        "state_heavy",
        "stress: 80 MB (full: 120 MB) embedding table, 2 small batches per epoch, SGD",
        quick=["--epochs", "30", "--rows", "250000"],
        full=["--epochs", "100", "--rows", "375000"],
        epochs_flag="--epochs",
        loops=[EPOCH_LOOP, FlorLoop("for _step in range(args.batches):", "step")],
        statements={
            "epoch": Statement(
                'print(f"epoch {epoch} loss {total_loss / args.batches:.6f}")',
                "head.weight.norm()",
            ),
            "batch": Statement("optimizer.step()", "loss"),
            "after": Statement("", "embedding.weight.sum()"),
        },
    ),
]


# --- editing the scripts -----------------------------------------------------------------


def insert(source: str, stmt: Statement, code: str) -> str:
    lines = source.splitlines(keepends=True)
    if not stmt.anchor:
        return source.rstrip("\n") + "\n" + code + "\n"
    hits = [i for i, line in enumerate(lines) if line.strip() == stmt.anchor]
    if len(hits) != 1:
        raise ValueError(f"anchor {stmt.anchor!r} found {len(hits)} times")
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    at = i + 1 if stmt.after else i
    lines[at:at] = [indent + code + "\n"]
    return "".join(lines)


def print_code(level: str, stmt: Statement) -> str:
    label = "" if level == "after" else f" {{{stmt.label}}}"
    return f'print(f"HINDSIGHT {level}{label} {{float({stmt.expr})!r}}")'


def flor_code(level: str, stmt: Statement) -> str:
    return f'flor.log("h_{level}", float({stmt.expr}))'


_LINE = re.compile(r"^HINDSIGHT (\w+)(?: (-?\d+))? (\S+)$")


def hindsight(stdout: str) -> list[tuple[int | None, str]]:
    """(epoch, value text) of each HINDSIGHT line."""
    out = []
    for line in stdout.splitlines():
        m = _LINE.match(line)
        if m:
            out.append((int(m.group(2)) if m.group(2) is not None else None, m.group(3)))
    return out


def wanted(values: list[tuple[int | None, str]], epochs: list[int]) -> list[tuple[int | None, str]]:
    keep = set(epochs)
    return [(e, v) for e, v in values if e is None or e in keep]


# --- running -------------------------------------------------------------------------------


def florc_command() -> list[str]:
    exe = Path(sys.executable).with_name("florc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "florc"]


@dataclass
class Timed:
    seconds: float
    stdout: str
    stderr: str


def timed(cmd: list[str], cwd: Path) -> Timed:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"bench_suite: `{' '.join(cmd)}` in {cwd} failed ({proc.returncode})")
    return Timed(seconds, proc.stdout, proc.stderr)


def folder_bytes(*folders: Path) -> int:
    return sum(f.stat().st_size for d in folders if d.exists() for f in d.rglob("*") if f.is_file())


_STORED = re.compile(r"(\d+) checkpoints \(([\d.]+) MB, ([\d.]+) MB stored\)")
_READ = re.compile(r"([\d.]+) MB read")


def record_summary(stderr: str) -> dict:
    m = _STORED.search(stderr)
    if not m:
        return {}
    return {"checkpoints": int(m.group(1)), "logical_mb": float(m.group(2)),
            "stored_mb": float(m.group(3))}


def read_bandwidth(folder: Path, size: int = 256 << 20) -> dict:
    """Read bandwidth of this disk, MB/s: cold (page cache dropped for the file) and cached."""
    path = folder / "bandwidth.bin"
    block = os.urandom(4 << 20)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())

    def read() -> float:
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.read(8 << 20):
                pass
        return size / 1e6 / (time.perf_counter() - t0)

    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    cold = read()
    cached = statistics.median(read() for _ in range(3))
    path.unlink()
    return {"cold_mb_s": cold, "cached_mb_s": cached}


@dataclass
class Bench:
    work: Workload
    full: bool
    tmp: Path
    flor_ok: bool = True
    rows: list[dict] = field(default_factory=list)

    def source(self) -> str:
        return (WORKLOADS_DIR / self.work.script).read_text()

    def project(self, tag: str, source: str) -> Path:
        folder = self.tmp / f"{self.work.name}-{tag}"
        folder.mkdir()
        (folder / self.work.script).write_text(source)
        return folder

    def add(self, **row) -> dict:
        row = {"workload": self.work.name, **row}
        self.rows.append(row)
        tail = {k: v for k, v in row.items() if k not in ("workload", "values")}
        print("  " + json.dumps(tail, default=str), flush=True)
        return row

    def epochs_for(self, which: str) -> list[int]:
        n = self.work.epochs(self.full)
        return {"one": [n // 2], "half": list(range(n // 2, n)), "all": list(range(n))}[which]

    def spec(self, which: str) -> str:
        e = self.epochs_for(which)
        return "all" if which == "all" else (f"{e[0]}" if len(e) == 1 else f"{e[0]}-{e[-1]}")

    # A: plain, setup, record ---------------------------------------------------------------

    def recordings(self, reps: int) -> tuple[Path, FlorDBProject | None]:
        w, args, src = self.work, self.work.args(self.full), self.source()
        zero = [*args[: args.index(w.epochs_flag) + 1], "0", *args[args.index(w.epochs_flag) + 2 :]]
        kinds = ["setup", "plain", "florc_record", "flordb_record"]
        florc_project: Path | None = None
        flor_project: FlorDBProject | None = None
        for rep in range(reps):
            for kind in kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]:
                folder = self.project(f"{kind}{rep}", src)
                if kind == "setup":
                    t = timed([sys.executable, w.script, *zero], folder)
                    self.add(kind=kind, rep=rep, seconds=t.seconds)
                elif kind == "plain":
                    t = timed([sys.executable, w.script, *args], folder)
                    self.add(kind=kind, rep=rep, seconds=t.seconds)
                elif kind == "florc_record":
                    t = timed([*florc_command(), "record", w.script, *args], folder)
                    self.add(kind=kind, rep=rep, seconds=t.seconds, **record_summary(t.stderr),
                             disk_bytes=folder_bytes(folder / ".florc"))
                    florc_project = folder
                elif self.flor_ok:
                    shutil.rmtree(folder)
                    peer = FlorDBProject(folder, w.script)
                    r = peer.record(annotate(src, w.loops), args)
                    self.add(kind=kind, rep=rep, seconds=r.seconds, ok=r.ok, error=r.error,
                             disk_bytes=folder_bytes(folder / ".flor", folder / ".git"))
                    if r.ok:
                        flor_project = peer
                    else:
                        self.flor_ok = False
        assert florc_project is not None
        return florc_project, flor_project

    # B: hindsight statements ---------------------------------------------------------------

    def hindsight(self, recorded: Path, peer: FlorDBProject | None, reps: int) -> None:
        w, args, src = self.work, self.work.args(self.full), self.source()
        for rep in range(reps):
            for level in LEVELS:
                stmt = w.statements[level]
                edited = insert(src, stmt, print_code(level, stmt))
                ref = self.project(f"edited-{level}{rep}", edited)
                t = timed([sys.executable, w.script, *args], ref)
                reference = hindsight(t.stdout)
                self.add(kind="retrain", level=level, rep=rep, seconds=t.seconds,
                         values=len(reference))
                (recorded / w.script).write_text(edited)
                ranges = ["all"] if level == "after" else list(RANGES)
                for which in ranges:
                    want = wanted(reference, self.epochs_for(which))
                    two = which == "all" or (self.full and which == "half")
                    worker_counts = [1, 2] if two and level != "after" else [1]
                    for workers in worker_counts:
                        t = timed(
                            [*florc_command(), "replay", w.script, "--epochs", self.spec(which),
                             "--workers", str(workers)],
                            recorded,
                        )
                        got = hindsight(t.stdout)
                        m = _READ.search(t.stderr)
                        fidelity = next(
                            (ln.split("fidelity: ", 1)[1] for ln in t.stderr.splitlines()
                             if "fidelity: " in ln), "")
                        self.add(kind="florc_replay", level=level, range=which, workers=workers,
                                 rep=rep, seconds=t.seconds, equal=got == want, values=len(got),
                                 mb_read=float(m.group(1)) if m else None, fidelity=fidelity)
                    flor_range = self.full or which == "half" or level == "after"
                    if peer is not None and self.flor_ok and flor_range:
                        flor_edited = annotate(insert(src, stmt, flor_code(level, stmt)), w.loops)
                        epochs = None if level == "after" else self.epochs_for(which)
                        r = peer.replay(flor_edited, [f"h_{level}"], epochs)
                        got_flor = flor_values(r.values, level)
                        self.add(kind="flordb_replay", level=level, range=which, workers=1,
                                 rep=rep, seconds=r.seconds, ok=r.ok, error=r.error,
                                 equal=r.ok and got_flor == [v for _, v in want],
                                 values=len(got_flor))


def flor_values(rows: list[dict], level: str) -> list[str]:
    keyed = sorted(rows, key=lambda r: (int(r.get("epoch") or 0), int(r.get("step") or 0)))
    return [repr(float(r["value"])) for r in keyed]


# --- summary -------------------------------------------------------------------------------


def median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(rows: list[dict], work: Workload, full: bool, bandwidth: dict) -> dict:
    def pick(**kw) -> list[dict]:
        return [r for r in rows if all(r.get(k) == v for k, v in kw.items())]

    def secs(**kw) -> float | None:
        return median([r["seconds"] for r in pick(**kw)])

    plain, setup = secs(kind="plain"), secs(kind="setup")
    reps = sorted({r["rep"] for r in pick(kind="plain")})

    def overhead(kind: str) -> float | None:
        ratios = []
        for rep in reps:
            a, b = pick(kind=kind, rep=rep), pick(kind="plain", rep=rep)
            if a and b and a[0].get("ok", True):
                ratios.append(a[0]["seconds"] / b[0]["seconds"] - 1)
        return median(ratios)

    rec = pick(kind="florc_record")
    flor_rec = pick(kind="flordb_record")
    n = work.epochs(full)
    out = {
        "epochs": n,
        "args": work.args(full),
        "plain_s": plain,
        "setup_s": setup,
        "florc_record_s": secs(kind="florc_record"),
        "florc_overhead": overhead("florc_record"),
        "florc_checkpoints": median([r.get("checkpoints") for r in rec]),
        "florc_stored_mb": median([r.get("stored_mb") for r in rec]),
        "florc_disk_mb": median([r["disk_bytes"] / 1e6 for r in rec]),
        "flordb_record_s": secs(kind="flordb_record"),
        "flordb_overhead": overhead("flordb_record"),
        "flordb_disk_mb": median([r["disk_bytes"] / 1e6 for r in flor_rec]),
        "flordb_error": next((r["error"] for r in flor_rec if not r.get("ok")), ""),
        "hindsight": {},
    }
    for level in LEVELS:
        retrain = secs(kind="retrain", level=level)
        own = max(0.0, (retrain or 0) - (plain or 0))  # the statement's own compute, whole run
        per = {"retrain_s": retrain}
        for which in ["all"] if level == "after" else RANGES:
            k = len({"one": [0], "half": range(n // 2, n), "all": range(n)}[which])
            cell: dict = {"epochs": k}
            for workers in (1, 2):
                rs = pick(kind="florc_replay", level=level, range=which, workers=workers)
                if rs:
                    cell[f"florc_{workers}w_s"] = median([r["seconds"] for r in rs])
                    cell[f"florc_{workers}w_equal"] = all(r["equal"] for r in rs)
                    cell[f"florc_{workers}w_fidelity"] = sorted({r["fidelity"] for r in rs})
                    cell[f"florc_{workers}w_mb_read"] = median([r["mb_read"] for r in rs])
            fr = pick(kind="flordb_replay", level=level, range=which)
            if fr:
                ok = [r for r in fr if r["ok"]]
                cell["flordb_s"] = median([r["seconds"] for r in ok]) if ok else None
                cell["flordb_equal"] = bool(ok) and all(r["equal"] for r in ok)
                cell["flordb_error"] = next((r["error"] for r in fr if not r["ok"]), "")
            mb = cell.get("florc_1w_mb_read") or 0.0
            share = 1.0 if level == "after" else k / n
            cell["floor_s"] = (setup or 0) + mb / bandwidth["cold_mb_s"] + own * share
            per[which] = cell
        out["hindsight"][level] = per
    return out


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": dt.date.today().isoformat(),
        "commit": commit,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        **{p: version(p) for p in ("florc", "flordb", "torch", "scikit-learn")},
    }


# --- report --------------------------------------------------------------------------------


def s(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1%}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}"


def mark(equal: bool | None) -> str:
    return {True: "", False: " ✗", None: ""}[equal]


def markdown(result: dict) -> str:
    mode = result["mode"]
    m, bw = result["machine"], result["bandwidth"]
    out = [
        f"## Suite ({mode}): florc vs retraining vs FlorDB",
        "",
        f"Run {m['date']} with `{result['command']}` in {result['minutes']:.1f} min on "
        f"{m['cpu']} ({m['cores']} cores), {m['system']}, Python {m['python']}; florc "
        f"{m['florc']} (commit {m.get('commit') or '?'}), FlorDB {m['flordb']}, "
        f"torch {m['torch']}, scikit-learn {m['scikit-learn']}. "
        f"Disk read bandwidth: {bw['cold_mb_s']:.0f} MB/s cold "
        f"(page cache dropped for the file), {bw['cached_mb_s']:.0f} MB/s cached. "
        f"Repetitions: {result['reps']} for setup/plain/record (rotated), "
        f"{result['replay_reps']} for the hindsight runs; medians. Method: the docstring of "
        "`benchmarks/bench_suite.py`.",
        "",
        "### Record",
        "",
        "| workload | epochs | setup s | plain s | florc record s | florc overhead | "
        "checkpoints | florc stored MB | FlorDB record s | FlorDB overhead | FlorDB on disk MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, w in result["workloads"].items():
        out.append(
            f"| {name} | {w['epochs']} | {s(w['setup_s'])} | {s(w['plain_s'])} | "
            f"{s(w['florc_record_s'])} | {pct(w['florc_overhead'])} | "
            f"{w['florc_checkpoints'] if w['florc_checkpoints'] is not None else '—'} | "
            f"{s(w['florc_stored_mb'])} | {s(w['flordb_record_s'])} | "
            f"{pct(w['flordb_overhead'])} | {s(w['flordb_disk_mb'])} |"
        )
    out += [
        "",
        "### Hindsight: seconds to get the new statement's values",
        "",
        "retrain = a plain run of the edited script. florc 1w / 2w = `florc replay` with 1 or 2 "
        "workers. floor = setup + MB florc read ÷ cold read bandwidth + the statement's own "
        "compute. ✗ marks values that differ from the plain run's. one = the middle epoch; "
        "half = the last half; all = every epoch; `after` has no range.",
        "",
        "| workload | statement | epochs | retrain s | florc 1w s | florc 2w s | FlorDB s | "
        "floor s | florc ÷ retrain | FlorDB ÷ retrain | florc ÷ floor | MB read |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, w in result["workloads"].items():
        for level, per in w["hindsight"].items():
            for which in ("one", "half", "all"):
                c = per.get(which)
                if not c:
                    continue
                f1, f2, fl = c.get("florc_1w_s"), c.get("florc_2w_s"), c.get("flordb_s")
                flor_cell = (
                    f"{s(fl)}{mark(c.get('flordb_equal'))}"
                    if "flordb_s" in c and fl is not None
                    else ("failed" if "flordb_s" in c else "—")
                )
                best = min(x for x in (f1, f2) if x is not None)
                out.append(
                    f"| {name} | {level} | {which} ({c['epochs']}) | {s(per['retrain_s'])} | "
                    f"{s(f1)}{mark(c.get('florc_1w_equal'))} | "
                    f"{s(f2)}{mark(c.get('florc_2w_equal'))} | {flor_cell} | "
                    f"{s(c['floor_s'])} | {ratio(best, per['retrain_s'])} | "
                    f"{ratio(fl, per['retrain_s'])} | {ratio(best, c['floor_s'])} | "
                    f"{s(c.get('florc_1w_mb_read'))} |"
                )
    verdicts = [
        r["fidelity"].split(" (")[0] for r in result["rows"] if r["kind"] == "florc_replay"
    ]
    fidelity = [f"{verdicts.count(v)} × {v}" for v in sorted(set(verdicts))]
    unequal = [
        f"{name}/{level}/{which}/{k.split('_')[0]}"
        for name, w in result["workloads"].items()
        for level, per in w["hindsight"].items()
        for which, c in per.items() if isinstance(c, dict)
        for k, v in c.items() if k.endswith("equal") and v is False
    ]
    errors = [
        f"{name}: {w['flordb_error']}" for name, w in result["workloads"].items()
        if w["flordb_error"]
    ] + [
        f"{name}/{level}/{which}: {c['flordb_error']}"
        for name, w in result["workloads"].items()
        for level, per in w["hindsight"].items()
        for which, c in per.items() if isinstance(c, dict) and c.get("flordb_error")
    ]
    out += [
        "",
        f"florc's fidelity verdicts over its {len(verdicts)} replays: " + ", ".join(fidelity) + ".",
        "Values different from a plain run of the edited script: "
        + (", ".join(unequal) if unequal else "none") + ".",
        "FlorDB errors: " + ("; ".join(errors) if errors else "none") + ".",
    ]
    notes = [f"- {n}: {w['note']}" for n, w in result.get("notes", {}).items()]
    if notes:
        out += ["", "Notes:", *notes]
    plots = result.get("plots", [])
    if plots:
        out += ["", *[f"![{Path(p).stem}](results/{Path(p).name})" for p in plots]]
    return "\n".join(out) + "\n"


def replace_section(document: str, begin: str, end: str, body: str) -> str:
    block = f"{begin}\n{body}{end}"
    if begin in document and end in document:
        head, rest = document.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    return document.rstrip("\n") + "\n\n" + block + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--full", action="store_true", help="larger workloads, more repetitions")
    ap.add_argument("--reps", type=int, help="repetitions of setup/plain/record")
    ap.add_argument("--replay-reps", type=int, help="repetitions of the hindsight runs")
    ap.add_argument("--only", action="append", help="run only this workload (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    a = ap.parse_args()
    reps = a.reps or (3 if a.full else 2)
    replay_reps = a.replay_reps or (3 if a.full else 1)
    mode = "full" if a.full else "quick"
    works = [w for w in WORKLOADS if not a.only or w.name in a.only]
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="florc-suite-"))
    result: dict = {"mode": mode, "reps": reps, "replay_reps": replay_reps,
                    "command": "python benchmarks/bench_suite.py" + (" --full" if a.full else ""),
                    "machine": machine(), "workloads": {}, "rows": [], "notes": {}}
    try:
        result["bandwidth"] = read_bandwidth(tmp)
        for work in works:
            print(f"{work.name}:", flush=True)
            bench = Bench(work, a.full, tmp)
            recorded, peer = bench.recordings(reps)
            bench.hindsight(recorded, peer, replay_reps)
            result["workloads"][work.name] = summarize(
                bench.rows, work, a.full, result["bandwidth"]
            )
            result["rows"] += bench.rows
            if work.note:
                result["notes"][work.name] = {"note": work.note}
    finally:
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result["minutes"] = (time.perf_counter() - t0) / 60
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = RESULTS_DIR / f"suite_{mode}"
    if not a.only:
        from plots import suite_plots

        result["plots"] = [p.name for p in suite_plots(result, stem)]  # in results/
    text = markdown(result)
    if a.only:
        print(text)
        return 0
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    doc = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    RESULTS_MD.write_text(
        replace_section(doc, f"<!-- suite-{mode}:begin -->", f"<!-- suite-{mode}:end -->", text)
    )
    print(text)
    print(f"wrote {RESULTS_MD.relative_to(HERE.parent)} and {stem.relative_to(HERE.parent)}.json "
          f"in {result['minutes']:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
