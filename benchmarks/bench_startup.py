"""Start-up benchmark: how long a replay takes before the script's first line runs.

With `--workers N` the parent prepares the replay (store reads, compile, alignment, plan), then
starts one worker per segment; each worker must get from its own start to the script's first
line. Every second spent there is paid once per worker and per replay, before any epoch runs.

The script is examples/digits_cnn/train.py, copied into a fresh project whose first statement
imports a local module that appends (pid, process start, now) to a file: the process start comes
from /proc (its age, subtracted from now), so a worker's time from its start to the first line is
measured inside the worker. The recording has 6 epochs; the edit adds an epoch-level print; the
replay asks for epochs 2-5.

Reported, as medians over the repetitions:
- parent: from launching `florc replay` to the first worker's process start (the parent's own
  preparation, a re-exec to pin the hash seed included);
- worker: from a worker's process start to the script's first line in it (each worker);
- one process: `--workers 1`, from launching `florc replay` to the script's first line.

Writes the section between `<!-- startup:begin -->` and `<!-- startup:end -->` of RESULTS.md and
prints it. Usage: python benchmarks/bench_startup.py [--reps N]
"""

from __future__ import annotations

import argparse
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
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- startup:begin -->", "<!-- startup:end -->"

FIRST_LINE = '''\
"""Appends (pid, process start, now) to $FLORC_BENCH_FIRST_LINE when imported."""
import os
import time


def _mark():
    path = os.environ.get("FLORC_BENCH_FIRST_LINE")
    if not path:
        return
    now = time.time()
    with open("/proc/self/stat") as f:
        started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    age = uptime - started_ticks / os.sysconf("SC_CLK_TCK")
    with open(path, "a") as out:
        out.write(f"{os.getpid()} {now - age:.3f} {now:.3f}\\n")


_mark()
'''

EPOCH_PRINT = (
    '    print(f"HINDSIGHT epoch {epoch} conv1={model.conv1.weight.norm().item():.6f}")\n'
)


def _project(tmp: Path) -> Path:
    source = (ROOT / "examples" / "digits_cnn" / "train.py").read_text()
    doc_end = source.index('"""', 3) + 3
    script = tmp / "train.py"
    script.write_text(source[:doc_end] + "\nimport first_line  # noqa: F401\n" + source[doc_end:])
    (tmp / "first_line.py").write_text(FIRST_LINE)
    return script


def _add_epoch_print(script: Path) -> None:
    """The hindsight edit: a print after the epoch's validation accuracy is computed."""
    lines = script.read_text().splitlines(keepends=True)
    at = max(i for i, line in enumerate(lines) if "val_acc" in line and "=" in line)
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines.insert(at + 1, indent + EPOCH_PRINT.lstrip())
    script.write_text("".join(lines))


def _florc(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "florc", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done


def _marks(path: Path) -> list[tuple[int, float, float]]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        pid, start, now = line.split()
        out.append((int(pid), float(start), float(now)))
    return out


def measure(reps: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"parent": [], "worker": [], "one": []}
    with tempfile.TemporaryDirectory(prefix="florc-startup-") as tmp_name:
        tmp = Path(tmp_name)
        script = _project(tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHASHSEED")}
        env["OMP_NUM_THREADS"] = "1"
        _florc("record", "train.py", "--epochs", "6", cwd=tmp, env=env)
        _add_epoch_print(script)
        # outside the project: replay keeps the script's writes to project files in a sandbox
        marks = Path(tempfile.mkdtemp(prefix="florc-startup-marks-")) / "first_lines.txt"
        env["FLORC_BENCH_FIRST_LINE"] = str(marks)
        for _ in range(reps):
            for workers in ("2", "1"):
                marks.unlink(missing_ok=True)
                launched = time.time()
                _florc(
                    "replay", "train.py", "--epochs", "2-5", "--workers", workers, cwd=tmp, env=env
                )
                got = _marks(marks)
                if workers == "1":
                    times["one"].append(min(now for _, _, now in got) - launched)
                    continue
                if len(got) < 2:
                    raise SystemExit(f"expected a first line in 2 workers, got {got}")
                times["parent"].append(min(start for _, start, _ in got) - launched)
                times["worker"].extend(now - start for _, start, now in got)
        shutil.rmtree(marks.parent, ignore_errors=True)
    return times


def replace_section(text: str, body: str) -> str:
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return text.rstrip() + "\n\n" + block + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=3, help="replays of each kind")
    a = ap.parse_args()
    t = measure(a.reps)

    def med(k: str) -> str:
        return f"{statistics.median(t[k]):.2f} s"

    def span(k: str) -> str:
        return f"{min(t[k]):.2f}–{max(t[k]):.2f} s"

    body = "\n".join(
        [
            "## Replay start-up: time before the script's first line",
            "",
            f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}. Command: `python benchmarks/bench_startup.py "
            f"--reps {a.reps}`: examples/digits_cnn recorded for 6 epochs, an epoch-level print "
            "added, `florc replay --epochs 2-5`. The script's first line records its process's "
            "start time (from /proc) and the time it ran.",
            "",
            "| what | median | range | samples |",
            "|---|---|---|---|",
            f"| `--workers 2`: parent, launch → first worker starts | {med('parent')} | "
            f"{span('parent')} | {len(t['parent'])} |",
            f"| `--workers 2`: worker, its start → script's first line | {med('worker')} | "
            f"{span('worker')} | {len(t['worker'])} |",
            f"| `--workers 1`: launch → script's first line | {med('one')} | {span('one')} | "
            f"{len(t['one'])} |",
            "",
        ]
    )
    RESULTS_MD.write_text(
        replace_section(RESULTS_MD.read_text() if RESULTS_MD.exists() else "", body)
    )
    print(body)
    print(f"wrote {RESULTS_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
