"""FlorDB (PyPI `flordb` 4.0.1) as a peer on the workloads florc is measured on.

A library for benchmark harnesses; `python benchmarks/peer_flordb.py` runs a self-check.

FlorDB's way, as its documentation (the package README, docs/tracking.md, docs/replay.md)
describes it:

  * record: add `import flordb as flor`, wrap loops in `flor.loop(name, iterable)`, declare inputs
    with `flor.arg`, run `python script.py` inside a git repository. At exit FlorDB switches to a
    `flor.branch` branch, writes `.flor/runs/<tstamp>.jsonl` plus a `.flor.branch.cmd` file and
    auto-commits everything in the folder (`git add -A`).
  * hindsight: add `flor.log(name, expr)` statements to the script and run
    `python -m flordb replay --apply NAME[,NAME] [--iter LOOP=SPEC ...]`. It commits the edited
    script, asks `[y/N]` on stdin, checks each recorded run's commit out (detached HEAD), splices
    the new statements into that version, runs `python <script> --replay_flor --apply ...` from
    PATH, then `git reset --hard` and checks its branch out again. Recovered values are rows with
    source='replay' in the sqlite cache `.flor/<folder name>.db`.

In 4.0.1 replay always recomputes from iteration 0 (no checkpoint restore: `flor.checkpointing`,
`flor.restore` and `flor.set_ckpt_interval` are retired no-ops). `--iter` only chooses which
iterations *log*: the outermost `flor.loop` runs 0..last selected iteration and stops there; inner
loops always run in full; unselected iterations run with logging suppressed. A loop not named in
`--iter` logs only its last iteration.

Two adaptations, both in `annotate`, both FlorDB's documented mechanisms:

  * argparse. FlorDB replays run the script as `python script.py --replay_flor --apply ...`
    without the recorded argv, so an `args = parser.parse_args()` script would die on the unknown
    flags and would otherwise fall back to its defaults. FlorDB's way to declare inputs is
    `flor.arg(name, default)`: recorded with the run, and on replay it returns the recorded value.
    `annotate` therefore parses the real argv on a forward run (no argv in replay mode) and routes
    every scalar option through `flor.arg`. It also gives the run the ctx-less records FlorDB's
    replay planner needs (`flor.dataframe()` with no columns pivots those; without any, replay
    finds no runs to schedule).
  * `while` loops. `flor.loop` needs an iterable and, on replay, materializes it with `list()`
    before the first iteration, which a condition-driven loop cannot provide. FlorDB's API for an
    iteration space it doesn't own is the context manager `flor.iteration(name, idx, value)`
    ("the user's own loop supplies idx", api.py; the pattern
    `for epoch in range(n): with flor.iteration("epoch", epoch, None): ...` is in FlorDB's own
    tests). So the loop body is wrapped in `with flor.iteration(name, i, None):`, with a counter
    incremented at the top of the body. FlorDB's replay narrows such a loop only by suppressing
    logs (the body always runs), and without any `flor.loop` in the script it plans a "full scan".
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "peer-bench",
    "GIT_AUTHOR_EMAIL": "peer-bench@example.invalid",
    "GIT_COMMITTER_NAME": "peer-bench",
    "GIT_COMMITTER_EMAIL": "peer-bench@example.invalid",
}


# ---------------------------------------------------------------------------------------------
# Annotation
# ---------------------------------------------------------------------------------------------


@dataclass
class FlorLoop:
    header: str  # exact text of a loop header line in the plain script
    name: str  # flor loop name, e.g. "epoch" or "step"
    # `for X in ITER:` becomes `for X in flor.loop(name, ITER):` (docs/tracking.md).
    # `while COND:` keeps its header; its body is wrapped in `with flor.iteration(name, i, None):`
    # with `i` a counter the rewrite adds (see the module docstring for why not flor.loop).


def _find_header(lines: list[str], header: str) -> int:
    want = header.strip()
    hits = [i for i, line in enumerate(lines) if line.strip() == want]
    if len(hits) != 1:
        raise ValueError(f"loop header {header!r} found {len(hits)} times, expected exactly once")
    return hits[0]


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _string_interior_lines(source: str) -> set[int]:
    """1-based numbers of lines that lie inside a multi-line string token (not its first line)."""
    inside: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    return inside


def _rewrite_for(lines: list[str], i: int, name: str) -> None:
    line = lines[i]
    indent, text = _indent_of(line), line.strip()
    node = ast.parse(text + "\n    pass\n").body[0]
    if not isinstance(node, ast.For) or node.orelse:
        raise ValueError(f"not a simple `for` header: {text!r}")
    target = ast.get_source_segment(text, node.target)
    iterable = ast.get_source_segment(text, node.iter)
    newline = "\n" if line.endswith("\n") else ""
    lines[i] = f"{indent}for {target} in flor.loop({json.dumps(name)}, {iterable}):{newline}"


def _rewrite_while(lines: list[str], i: int, name: str) -> None:
    source = "".join(lines)
    node = next(
        (n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.While) and n.lineno == i + 1),
        None,
    )
    if node is None:
        raise ValueError(f"line {i + 1} is not a `while` statement: {lines[i].strip()!r}")
    first, last = node.body[0].lineno, node.body[-1].end_lineno
    if first == node.lineno:
        raise ValueError(f"one-line `while` bodies are not supported: {lines[i].strip()!r}")
    header_indent = _indent_of(lines[i])
    body_indent = _indent_of(lines[first - 1])
    unit = body_indent[len(header_indent) :] or "    "
    interior = _string_interior_lines(source)
    for lineno in range(first, last + 1):
        line = lines[lineno - 1]
        if line.strip() and lineno not in interior:
            lines[lineno - 1] = unit + line
    counter = f"_flor_{re.sub(r'[^0-9A-Za-z_]', '_', name)}_i"
    lines[first - 1 : first - 1] = [
        f"{body_indent}{counter} += 1\n",
        f"{body_indent}with flor.iteration({json.dumps(name)}, {counter}, None):\n",
    ]
    lines[i:i] = [f"{header_indent}{counter} = -1  # flor.iteration index of the loop below\n"]


def _bridge_argparse(lines: list[str]) -> None:
    """`ns = parser.parse_args()` (module level): argv on forward runs only, inputs via flor.arg."""
    tree = ast.parse("".join(lines))
    sites = [
        n
        for n in tree.body
        if isinstance(n, ast.Assign)
        and len(n.targets) == 1
        and isinstance(n.targets[0], ast.Name)
        and isinstance(n.value, ast.Call)
        and isinstance(n.value.func, ast.Attribute)
        and n.value.func.attr == "parse_args"
        and not n.value.args
        and not n.value.keywords
    ]
    if len(sites) != 1:
        return
    node = sites[0]
    ns = node.targets[0].id
    parser = ast.get_source_segment("".join(lines), node.value.func.value)
    new = [
        "# FlorDB replays run `python script.py --replay_flor ...` without the recorded argv:\n",
        "# parse argv on forward runs only, and declare every option with flor.arg so that\n",
        "# replay gets the recorded values back.\n",
        f"{ns} = {parser}.parse_args([] if flor.cli.in_replay_mode() else None)\n",
        f"for _flor_k, _flor_v in vars({ns}).items():\n",
        "    if isinstance(_flor_v, (bool, int, float, str)):\n",
        f"        setattr({ns}, _flor_k, flor.arg(_flor_k, _flor_v))\n",
    ]
    lines[node.lineno - 1 : node.end_lineno] = new


def _import_position(lines: list[str]) -> int:
    """Index of the line before which `import flordb as flor` goes: after docstring/__future__."""
    tree = ast.parse("".join(lines))
    pos = 0
    for n in tree.body:
        is_doc = (
            isinstance(n, ast.Expr)
            and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
        )
        is_future = isinstance(n, ast.ImportFrom) and n.module == "__future__"
        if (is_doc and pos == 0) or is_future:
            pos = n.end_lineno
        else:
            break
    return pos


def annotate(source: str, loops: list[FlorLoop], *, bridge_argparse: bool = True) -> str:
    """The plain script with FlorDB's API added as its documentation directs: `import flordb as
    flor`, loops wrapped (and, with bridge_argparse, argparse options declared with flor.arg).
    Raise ValueError if a header is not found exactly once."""
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for loop in loops:  # locate every header before rewriting any, so errors are about the input
        _find_header(lines, loop.header)
    for loop in loops:
        i = _find_header(lines, loop.header)
        head = lines[i].strip()
        if head.startswith("for "):
            _rewrite_for(lines, i, loop.name)
        elif head.startswith("while "):
            _rewrite_while(lines, i, loop.name)
        else:
            raise ValueError(f"not a `for` or `while` header: {loop.header!r}")
    if bridge_argparse:
        _bridge_argparse(lines)
    pos = _import_position(lines)
    lines[pos:pos] = ["import flordb as flor\n"]
    out = "".join(lines)
    ast.parse(out)
    return out


def flor_structure(source: str) -> tuple[list[str], dict[str, int]]:
    """(loop names in source order, {flor.log name: number of enclosing flor loops}).

    Parsed here rather than with flordb.hlast: importing flordb in this process would run its
    import-time side effects (argv parsing, `.flor/` creation in the current git repository).
    """
    loop_names: list[str] = []
    levels: dict[str, int] = {}

    def flor_call(node, attr):
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "flor"
            and node.func.attr == attr
            and node.args
            and isinstance(node.args[0], ast.Constant)
        )

    def visit(node, depth):
        here = depth
        if isinstance(node, ast.For) and flor_call(node.iter, "loop"):
            loop_names.append(node.iter.args[0].value)
            visit(node.target, depth)
            visit(node.iter, depth)
            for child in node.body + node.orelse:
                visit(child, depth + 1)
            return
        if isinstance(node, ast.With) and any(
            flor_call(it.context_expr, "iteration") for it in node.items
        ):
            for it in node.items:
                if flor_call(it.context_expr, "iteration"):
                    loop_names.append(it.context_expr.args[0].value)
            for child in node.body:
                visit(child, depth + 1)
            return
        if flor_call(node, "log"):
            levels[str(node.args[0].value)] = max(here, levels.get(str(node.args[0].value), 0))
        for child in ast.iter_child_nodes(node):
            visit(child, depth)

    visit(ast.parse(source), 0)
    return list(dict.fromkeys(loop_names)), levels


# ---------------------------------------------------------------------------------------------
# Running FlorDB
# ---------------------------------------------------------------------------------------------


@dataclass
class PeerRun:
    seconds: float  # wall-clock of the whole command(s)
    stdout: str
    stderr: str
    ok: bool
    error: str = ""


@dataclass
class PeerReplay(PeerRun):
    # one dict per hindsight value FlorDB returned: {"name": ..., "value": ..., <loop name>: index}
    values: list[dict] = field(default_factory=list)
    command: list[str] = field(default_factory=list)  # the replay command line as run


def _parse_value(text: str):
    """Inverse of FlorDB's `str(value)` in its sqlite cache, for the scalar cases."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


class FlorDBProject:
    """A git repository folder holding one training script, run forward and replayed by FlorDB."""

    def __init__(
        self,
        folder: Path,
        script_name: str,
        python: str = sys.executable,
        timeout: float | None = None,
    ):
        self.folder = Path(folder).resolve()
        self.script_name = script_name
        self.python = python
        self.timeout = timeout
        self.branch: str | None = None  # FlorDB's flor.* branch, known after record()
        self.folder.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(GIT_IDENTITY)
        env["PATH"] = str(Path(python).parent) + os.pathsep + env.get("PATH", "")
        env["GIT_TERMINAL_PROMPT"] = "0"
        env.pop("PYTHONSTARTUP", None)
        self.env = env
        if not (self.folder / ".git").exists():
            self._git("init", "-q", "-b", "main")
            self._git("config", "user.name", GIT_IDENTITY["GIT_AUTHOR_NAME"])
            self._git("config", "user.email", GIT_IDENTITY["GIT_AUTHOR_EMAIL"])
            self._git("config", "commit.gpgsign", "false")
            self._git("commit", "-q", "--allow-empty", "-m", "initial commit")

    # -- helpers ------------------------------------------------------------------------------

    @property
    def script(self) -> Path:
        return self.folder / self.script_name

    @property
    def db_path(self) -> Path:
        return self.folder / ".flor" / f"{self.folder.name}.db"

    def _git(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=self.folder, env=self.env, capture_output=True, text=True
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def _run(
        self, cmd: list[str], stdin: str | None = None
    ) -> tuple[float, subprocess.CompletedProcess, str]:
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                cwd=self.folder,
                env=self.env,
                input=stdin if stdin is not None else "",
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
            return time.perf_counter() - start, proc, ""
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            proc = subprocess.CompletedProcess(cmd, -9, out, err)
            return time.perf_counter() - start, proc, f"timed out after {self.timeout} s"

    def current_branch(self) -> str | None:
        name = self._git("rev-parse", "--abbrev-ref", "HEAD", check=False)
        return None if name in ("", "HEAD") else name

    def runs(self) -> list[str]:
        return sorted(p.stem for p in (self.folder / ".flor" / "runs").glob("*.jsonl"))

    def _db(self, sql: str, params=()) -> list[tuple]:
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(self.db_path)
        try:
            rows = conn.execute(sql, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def _restore_tree(self) -> str:
        """Back to FlorDB's branch with a clean tree (after an interrupted replay). '' if fine."""
        if self.branch is None:
            return ""
        notes = []
        if self.current_branch() != self.branch:
            self._git("reset", "-q", "--hard", check=False)
            self._git("checkout", "-q", self.branch, check=False)
            notes.append(f"working tree was not on {self.branch}; checked it out")
        if self.current_branch() != self.branch:
            notes.append(f"could not check {self.branch} out")
        return "; ".join(notes)

    # -- the two operations -------------------------------------------------------------------

    def record(self, source: str, args: list[str]) -> PeerRun:
        """Write the annotated script and run it forward the FlorDB way: `python script.py args`."""
        self.script.write_text(source)
        before = set(self.runs())
        seconds, proc, err = self._run([self.python, self.script_name, *args])
        new_runs = sorted(set(self.runs()) - before)
        ok = not err and proc.returncode == 0 and bool(new_runs)
        if not err and proc.returncode != 0:
            err = f"exit status {proc.returncode}: {_last_line(proc.stderr)}"
        elif not err and not new_runs:
            err = "FlorDB recorded no run (no new .flor/runs/*.jsonl)"
        branch = self.current_branch()
        if ok and (branch is None or not branch.startswith("flor.")):
            ok, err = False, f"after the run HEAD is on {branch!r}, not a flor.* branch"
        if ok:
            self.branch = branch
        return PeerRun(seconds, proc.stdout, proc.stderr, ok, err)

    def replay(
        self,
        edited_source: str,
        names: list[str],
        epochs: list[int] | None,
        outer_loop: str = "epoch",
    ) -> PeerReplay:
        """Hindsight-log `names` (flor.log statements added in edited_source) over the recorded run.

        epochs: 0-based iterations of `outer_loop` to log, passed as `--iter outer_loop=...`
        (other loops of the script then get `--iter LOOP=all`, so an inner-loop statement logs
        every inner iteration of the selected outer ones; FlorDB's default for an unnamed loop
        is its last iteration only). Not passed for statements outside every loop: there FlorDB
        would stop the outer loop after the last selected iteration and log the after-loop value
        from that truncated state. None = FlorDB's own defaults (no --iter).
        """
        cmd = [self.python, "-m", "flordb", "replay", "--apply", ",".join(names)]
        try:
            loop_names, levels = flor_structure(edited_source)
        except SyntaxError as e:
            return PeerReplay(0.0, "", "", False, f"edited source does not parse: {e}", command=cmd)
        missing = [n for n in names if n not in levels]
        if missing:
            return PeerReplay(
                0.0, "", "", False, f"no flor.log for {missing} in the edited source", command=cmd
            )
        if epochs is not None and max(levels[n] for n in names) > 0:
            cmd += ["--iter", f"{outer_loop}={','.join(str(e) for e in sorted(set(epochs)))}"]
            cmd += [
                a for loop in loop_names if loop != outer_loop for a in ("--iter", f"{loop}=all")
            ]
        if self.branch is None:
            return PeerReplay(
                0.0, "", "", False, "nothing recorded: call record() first", command=cmd
            )
        note = self._restore_tree()
        # Replay rows from earlier replays (same historical tstamp) would otherwise mix in.
        self._db("DELETE FROM logs WHERE source = 'replay'")
        self.script.write_text(edited_source)

        seconds, proc, err = self._run(cmd, stdin="y\n")
        out, errtext = proc.stdout, proc.stderr
        after = self._restore_tree()
        failure = re.search(r"^FLOR: replay of .* exited with code .*$", out, re.M)
        if not err and proc.returncode != 0:
            err = f"exit status {proc.returncode}: {_last_line(errtext) or _last_line(out)}"
        elif not err and failure:
            err = failure.group(0) + (f" ({_last_line(errtext)})" if errtext.strip() else "")
        elif not err and "Exception raised during" in out:
            err = _last_line(out)
        if after:
            err = "; ".join(x for x in (err, "after replay: " + after) if x)

        values: list[dict] = []
        try:
            marks = ",".join("?" * len(names))
            rows = self._db(
                "SELECT ctx, value_name, value, tstamp FROM logs WHERE source = 'replay' "
                f"AND value_type = 1 AND value_name IN ({marks}) ORDER BY rowid",
                tuple(names),
            )
            for ctx, name, value, tstamp in rows:
                row = {"name": name, "value": _parse_value(value), "tstamp": tstamp}
                for seg in json.loads(ctx) if ctx else []:
                    row[seg["name"]] = seg["iteration"]
                values.append(row)
        except (sqlite3.Error, ValueError) as e:
            err = err or f"reading FlorDB's cache failed: {e}"
        if not err and not values:
            err = "FlorDB's replay returned no values"
        if note:
            err = "; ".join(x for x in (err, "before replay: " + note) if x)
        ok = not err or (err.startswith("before replay:") and bool(values))
        return PeerReplay(seconds, out, errtext, ok, err, values=values, command=cmd)


def _last_line(text: str) -> str:
    """The last line that says something; with the lines before it where it is a bare word
    (git's "Aborting" follows the reason it gives)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if len(lines[-1]) < 20:
        return " / ".join(lines[-4:])[:300]
    return lines[-1][:300]


# ---------------------------------------------------------------------------------------------
# Self-check
# ---------------------------------------------------------------------------------------------

SELF_CHECK_SCRIPT = '''\
"""Tiny training script: 2-layer MLP on random data."""
import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--batches", type=int, default=5)
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
xs = torch.randn(args.batches, 16, 8)
ys = torch.randn(args.batches, 16, 1)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

for epoch in range(args.epochs):
    total = 0.0
    for b in range(args.batches):
        noise = 0.01 * torch.randn(16, 8)
        loss = ((model(xs[b] + noise) - ys[b]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    print(f"epoch {epoch} loss {total / args.batches:.6f}")
print("done")
'''

SELF_CHECK_LOOPS = [
    FlorLoop("for epoch in range(args.epochs):", "epoch"),
    FlorLoop("for b in range(args.batches):", "step"),
]

# (name, anchor line after which the statement goes, indentation, expression, epochs, loop vars)
SELF_CHECK_EDITS = [
    (
        "h_epoch",
        '    print(f"epoch {epoch} loss {total / args.batches:.6f}")\n',
        "    ",
        "float(model[0].weight.norm())",
        [2, 3],
        ["epoch"],
    ),
    ("h_batch", "        total += loss.item()\n", "        ", "float(loss)", [3], ["epoch", "b"]),
    ("h_after", 'print("done")\n', "", "float(model[0].weight.sum())", None, []),
]


def _insert_after(source: str, anchor: str, text: str) -> str:
    assert source.count(anchor) == 1, anchor
    return source.replace(anchor, anchor + text)


def _self_check() -> int:
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="peer_flordb_"))
    rows = []  # (what, seconds, ok, note)
    all_match = True
    try:
        plain_dir = root / "plain"
        plain_dir.mkdir()
        (plain_dir / "train.py").write_text(SELF_CHECK_SCRIPT)
        t0 = time.perf_counter()
        plain = subprocess.run(
            [sys.executable, "train.py"], cwd=plain_dir, capture_output=True, text=True
        )
        rows.append(("plain python train.py", time.perf_counter() - t0, plain.returncode == 0, ""))

        project = FlorDBProject(root / "flor", "train.py")
        rec = project.record(annotate(SELF_CHECK_SCRIPT, SELF_CHECK_LOOPS), [])
        rows.append(("flordb record", rec.seconds, rec.ok, rec.error or f"branch {project.branch}"))
        if not rec.ok:
            print(rec.stdout[-2000:], rec.stderr[-2000:])

        for name, anchor, indent, expr, epochs, loop_vars in SELF_CHECK_EDITS:
            # reference: the plain script with a repr() print of the same value
            keys = ", ".join(loop_vars)
            ref_stmt = f"{indent}print('@@|{name}|' + repr([{keys}]) + '|' + repr({expr}))\n"
            ref_src = _insert_after(SELF_CHECK_SCRIPT, anchor, ref_stmt)
            (plain_dir / f"ref_{name}.py").write_text(ref_src)
            t0 = time.perf_counter()
            ref = subprocess.run(
                [sys.executable, f"ref_{name}.py"], cwd=plain_dir, capture_output=True, text=True
            )
            ref_s = time.perf_counter() - t0
            expected = []
            for line in ref.stdout.splitlines():
                if line.startswith("@@|"):
                    _, n, idx, rep = line.split("|", 3)
                    idx = json.loads(idx)
                    if epochs is None or idx[0] in epochs:
                        expected.append((tuple(idx), rep))
            rows.append((f"plain edited ({name})", ref_s, ref.returncode == 0, ""))

            edited = annotate(
                _insert_after(SELF_CHECK_SCRIPT, anchor, f"{indent}flor.log({name!r}, {expr})\n"),
                SELF_CHECK_LOOPS,
            )
            rep = project.replay(edited, [name], epochs)
            got = [
                (tuple(v[k] for k in ("epoch", "step") if k in v), repr(v["value"]))
                for v in rep.values
            ]
            match = rep.ok and got == expected
            all_match &= match
            sel = "default" if epochs is None else ",".join(map(str, epochs))
            note = f"{len(got)} values, {'MATCH' if match else 'MISMATCH'}" + (
                f"; {rep.error}" if rep.error else ""
            )
            rows.append((f"flordb replay {name} (epochs {sel})", rep.seconds, rep.ok, note))
            print(f"# {' '.join(rep.command[1:])}")
            if not match:
                print("  expected:", expected)
                print("  got:     ", got)
                print(rep.stdout[-3000:], rep.stderr[-3000:])
            tree = project._git("status", "--porcelain")
            state = repr(tree) if tree else "clean"
            print(f"  after: branch {project.current_branch()}, status {state}")
    finally:
        if "--keep" in sys.argv:
            print("kept", root)
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"{'run':<40} {'seconds':>8}  ok     note")
    for what, seconds, ok, note in rows:
        print(f"{what:<40} {seconds:8.2f}  {str(ok):<5}  {note}")
    print()
    print("values matched exactly" if all_match else "VALUES DID NOT MATCH")
    return 0 if all_match else 1


if __name__ == "__main__":
    sys.exit(_self_check())
