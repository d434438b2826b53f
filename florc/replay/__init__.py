"""Replay orchestration: from a recorded run and an edited script to the new statements' output.

    prepare.py    the recorded run, the edited script compiled and aligned with it, the plan
    epochs.py     `--epochs` specs and how epochs are named in messages
    segments.py   splitting the epochs over workers (pure)
    executors.py  running workers: processes here, or Ray tasks
    worker.py     a worker's plan file, and the `_segment` command that runs one
    local.py      running the edited script under a replay session in this process
    merge.py      the workers' outputs merged in epoch order
    run.py        `florc replay`: one process, or workers
    retry.py      rerunning a parallel replay's failed workers
    verify.py     `florc verify`: re-executing every block of a sample of epochs
    results.py    the typed values these return

Nothing here prints: what the user should see goes to the `florc.report.Reporter` it is given.
"""
