"""Instrument on commit: the git hook, `florc instrument --check`, the compile cache, config."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import REPO, clean_env, florc

pytestmark = pytest.mark.e2e

TRAIN = """\
import numpy as np

w = np.zeros(3)
for epoch in range(3):
    for i in range(4):
        w += 0.1 * i
    print(epoch, round(float(w.sum()), 6))
"""

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env=clean_env(**GIT_ENV)
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    assert git(["init", "-q", "-b", "main"], tmp_path).returncode == 0
    return tmp_path


def commit(repo: Path, *files: str) -> subprocess.CompletedProcess[str]:
    assert git(["add", *files], repo).returncode == 0
    return git(["commit", "-q", "-m", "change"], repo)


@pytest.mark.smoke
def test_the_hook_checks_training_scripts_on_commit_and_fills_the_cache(repo: Path) -> None:
    inst = florc(["hook", "install"], repo)
    assert inst.returncode == 0, inst.stderr
    (repo / "train.py").write_text(TRAIN)
    (repo / "utils.py").write_text("def helper(x):\n    return x +\n")  # not a training script
    done = commit(repo, "train.py", "utils.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 training scripts instrumented and cached" in done.stderr
    assert list((repo / ".florc" / "cache").glob("*.json"))
    assert git(["status", "--porcelain"], repo).stdout == ""  # the store is never picked up

    rec = florc(["record", "train.py"], repo)
    assert rec.returncode == 0, rec.stderr
    assert "compile cache hit" in rec.stderr

    (repo / "bad_train.py").write_text("for epoch in range(3)\n    pass\n")
    refused = commit(repo, "bad_train.py")
    assert refused.returncode != 0
    assert "bad_train.py:1:22: syntax error" in refused.stderr
    assert "bad_train.py" not in git(["log", "--name-only"], repo).stdout


ENGINE = """\
def train_one_epoch(model, opt, data):
    for x in data:
        loss = model(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
"""

MAIN = """\
import torch

from engine import train_one_epoch

model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = [torch.ones(2), torch.zeros(2)]
for epoch in range(3):
    train_one_epoch(model, opt, data)
    print(epoch)
"""

SIM = """\
class Env:
    def step(self, action):
        return action + 1


env = Env()
for episode in range(2):
    for t in range(3):
        env.step(t)
"""


def test_the_hook_finds_training_scripts_by_content(repo: Path) -> None:
    assert florc(["hook", "install"], repo).returncode == 0
    (repo / "engine.py").write_text(ENGINE)
    (repo / "main.py").write_text(MAIN)  # trains through engine.train_one_epoch
    (repo / "sim.py").write_text(SIM)  # env.step(t) is not a training step
    (repo / "util.py").write_text("def helper(x):\n    return x +\n")  # broken, no training
    done = commit(repo, "engine.py", "main.py", "sim.py", "util.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 training scripts instrumented and cached, 0 failed" in done.stderr  # main.py
    rec = florc(["record", "main.py"], repo)
    assert "compile cache hit" in rec.stderr, rec.stderr

    (repo / "ppo.py").write_text(
        "import torch\nmodel = torch.nn.Linear(2, 1)\nfor update in range(3)\n"
        "    model(torch.ones(2)).sum().backward()\n"
    )
    refused = commit(repo, "ppo.py")
    assert refused.returncode != 0
    assert "ppo.py:3:23: syntax error" in refused.stderr
    assert "ppo.py: checked as a training script because it has a training step" in (refused.stderr)
    assert "ppo.py" not in git(["log", "--name-only"], repo).stdout


def test_a_broken_file_that_was_a_training_script_in_head_is_refused(repo: Path) -> None:
    assert florc(["hook", "install"], repo).returncode == 0
    (repo / "engine.py").write_text(ENGINE)
    (repo / "main.py").write_text(MAIN)
    assert commit(repo, "engine.py", "main.py").returncode == 0
    # main.py's own text has no training step: it trains through engine.py
    (repo / "main.py").write_text(MAIN.replace("for epoch in range(3):", "for epoch in range(3)"))
    refused = commit(repo, "main.py")
    assert refused.returncode != 0
    assert "main.py:8:22: syntax error" in refused.stderr
    assert "because it was a training script in HEAD" in refused.stderr
    assert git(["diff", "--cached", "--name-only"], repo).stdout == "main.py\n"  # not committed


def test_a_changed_script_or_module_is_compiled_again(repo: Path) -> None:
    (repo / "lib.py").write_text("SCALE = 0.1\n")
    (repo / "train.py").write_text("from lib import SCALE\n" + TRAIN.replace("0.1", "SCALE"))
    assert florc(["instrument", "--check", "train.py"], repo).returncode == 0
    assert "compile cache hit" in florc(["record", "train.py"], repo).stderr
    (repo / "lib.py").write_text("SCALE = 0.2\n")  # an imported project module changed
    assert "compile cache hit" not in florc(["record", "train.py"], repo).stderr
    assert "compile cache hit" in florc(["record", "train.py"], repo).stderr  # record caches too


def test_uninstall_restores_an_existing_hook_exactly(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    original = "#!/bin/sh\necho previous-hook-ran >> hook.log\nexit 0\n"
    hook.write_text(original)
    hook.chmod(0o755)
    assert florc(["hook", "install"], repo).returncode == 0
    (repo / "train.py").write_text(TRAIN)
    done = commit(repo, "train.py")
    assert done.returncode == 0, done.stderr
    assert "instrumented and cached" in done.stderr  # florc ran first ...
    assert (repo / "hook.log").read_text() == "previous-hook-ran\n"  # ... then the user's hook
    assert "already" in florc(["hook", "install"], repo).stdout
    out = florc(["hook", "uninstall"], repo)
    assert out.returncode == 0 and "as it was" in out.stdout
    assert hook.read_text() == original


def test_uninstall_removes_a_hook_florc_created(repo: Path) -> None:
    assert florc(["hook", "install"], repo).returncode == 0
    hook = repo / ".git" / "hooks" / "pre-commit"
    assert hook.exists() and os.access(hook, os.X_OK)
    assert florc(["hook", "uninstall"], repo).returncode == 0
    assert not hook.exists()


def test_a_hook_that_is_not_a_shell_script_is_left_alone(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/usr/bin/env python3\nprint('mine')\n")
    out = florc(["hook", "install"], repo)
    assert out.returncode == 2
    assert "florc instrument --check --staged" in out.stderr
    assert "Traceback" not in out.stderr
    assert hook.read_text() == "#!/usr/bin/env python3\nprint('mine')\n"


def test_hook_install_outside_git_says_so(tmp_path: Path) -> None:
    out = florc(["hook", "install"], tmp_path)
    assert out.returncode == 2 and "not inside a git repository" in out.stderr


def test_configuration_names_scripts_budget_and_store(repo: Path) -> None:
    (repo / "pyproject.toml").write_text(
        '[tool.florc]\nscripts = ["experiments/*.py"]\noverhead = 0.02\nstore = "runs-store"\n'
    )
    (repo / "experiments").mkdir()
    (repo / "experiments" / "mnist.py").write_text(TRAIN)
    (repo / "experiments" / "plots.py").write_text("x = [1, 2]\nprint(sum(x))\n")
    (repo / "train.py").write_text("print('not a training script here')\n")
    check = florc(["instrument", "--check"], repo)  # no files: every training script
    # plots.py has no main loop, and the configuration calls it a training script
    assert check.returncode == 1
    assert "experiments/plots.py:1:1: no main loop found" in check.stderr
    assert "1 training scripts instrumented and cached, 1 failed" in check.stderr
    assert (repo / "runs-store" / "cache").is_dir() and not (repo / ".florc").exists()

    rec = florc(["record", "experiments/mnist.py"], repo)
    assert rec.returncode == 0, rec.stderr
    assert "compile cache hit" in rec.stderr and "overhead budget 2%" in rec.stderr
    assert "store runs-store/" in rec.stderr
    rec = florc(["record", "--overhead", "0.1", "experiments/mnist.py"], repo)
    assert "overhead budget 10%" in rec.stderr  # the command line wins


def test_a_bad_configuration_is_a_clear_error(repo: Path) -> None:
    (repo / "pyproject.toml").write_text('[tool.florc]\noverhead = "lots"\n')
    (repo / "train.py").write_text(TRAIN)
    out = florc(["record", "train.py"], repo)
    assert out.returncode == 2
    assert "pyproject.toml [tool.florc]: overhead must be a number" in out.stderr
    assert "Traceback" not in out.stderr


def test_setup_cfg_configuration(repo: Path) -> None:
    (repo / "setup.cfg").write_text("[florc]\nscripts = run_*.py\n")
    (repo / "run_a.py").write_text(TRAIN)
    (repo / "train.py").write_text("for epoch in range(3)\n")  # not named: ignored
    out = florc(["instrument", "--check", "run_a.py", "train.py"], repo)
    assert out.returncode == 0, out.stderr
    assert "1 training scripts instrumented and cached, 0 failed" in out.stderr


def _pre_commit() -> list[str] | None:
    """The pre-commit command: on PATH, beside this Python, or its module in this Python."""
    found = shutil.which("pre-commit") or shutil.which(
        "pre-commit", path=str(Path(sys.executable).parent)
    )
    if found:
        return [found]
    if importlib.util.find_spec("pre_commit") is not None:
        return [sys.executable, "-m", "pre_commit"]
    return None


PRE_COMMIT = _pre_commit()


def _pip_indexes() -> list[str]:
    """The package indexes and find-links pip is configured with (environment and files)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    ).stdout
    index, more, no_index = "https://pypi.org/simple", [], False
    for line in out.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        urls = shlex.split(value.strip().strip("'\""))
        if name == "index-url" and urls:
            index = urls[0]
        elif name in ("extra-index-url", "find-links"):
            more += urls
        elif name == "no-index":
            no_index = urls[:1] in (["1"], ["true"], ["yes"], ["on"])
    return more if no_index else [index, *more]


def _unreachable_index() -> str | None:
    """Why pip could not fetch a package (so pre-commit cannot build its environment); None when
    one of its indexes answers: a local folder that exists, or an index that answers a request
    for its `pip` page within 3 seconds (through the proxy the environment names, as pip)."""
    indexes = _pip_indexes()
    for url in indexes:
        parts = urlsplit(url)
        if parts.scheme in ("", "file"):
            if Path(parts.path).exists():
                return None
            continue
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=3):
                return None
        except urllib.error.HTTPError:
            return None  # it answered
        except (OSError, ValueError):
            continue
    return f"no package index reachable ({', '.join(indexes) or 'pip has none configured'})"


# what pip says when it cannot get a package: the environment could not be built, not a failure
_OFFLINE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution found",
    "Could not fetch URL",
)


@pytest.mark.skipif(PRE_COMMIT is None, reason="needs the pre-commit framework")
def test_pre_commit_try_repo(repo: Path) -> None:
    """pre-commit installs florc from this repository and runs its florc-check hook."""
    offline = _unreachable_index()
    if offline:
        pytest.skip(f"pre-commit builds the hook's environment from a package index: {offline}")
    assert PRE_COMMIT is not None
    (repo / "train.py").write_text(TRAIN)
    (repo / "bad_train.py").write_text("for epoch in range(3)\n    pass\n")
    git(["add", "."], repo)
    env = clean_env(**GIT_ENV, PRE_COMMIT_HOME=str(repo.parent / "pre-commit-home"))

    def try_repo(*files: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*PRE_COMMIT, "try-repo", str(REPO), "florc-check", "--files", *files],
            cwd=repo,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        log = Path(env["PRE_COMMIT_HOME"]) / "pre-commit.log"
        said = done.stdout + done.stderr + (log.read_text() if log.exists() else "")
        if done.returncode != 0 and (why := next((w for w in _OFFLINE if w in said), None)):
            pytest.skip(f"pre-commit could not build the hook's environment: pip said {why!r}")
        return done

    good = try_repo("train.py")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = try_repo("train.py", "bad_train.py")
    assert bad.returncode == 1
    assert "bad_train.py:1:22: syntax error" in bad.stdout + bad.stderr
