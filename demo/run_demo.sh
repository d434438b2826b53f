#!/usr/bin/env bash
# florc demo: record a training run, add a print statement afterwards, replay only
# the epochs you ask for, then look at the store. Run it with `make demo`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FLORC="$REPO/.venv/bin/florc"
PYTHON="$REPO/.venv/bin/python"
if [[ ! -x "$FLORC" ]]; then
    echo "florc is not installed in $REPO/.venv; run 'make install' (or 'make demo') first" >&2
    exit 1
fi

WORK="$(mktemp -d)"
if [[ -z "${KEEP_DEMO:-}" ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi

step() { printf '\n==> %s\n' "$*"; }

step "A fresh project folder with the demo training script (a git root, so florc uses it as the project root)"
cp "$REPO/demo/train.py" "$WORK/train.py"
cd "$WORK"
git init -q
echo "$WORK"

step "1. florc record --checkpoint-all train.py  (runs the unmodified script; checkpoints go to .florc/)"
# This demo trains for about a second, too little for the default 5% overhead budget to pay for
# many checkpoints; --checkpoint-all takes every one. Real runs keep the budget (--overhead).
"$FLORC" record --checkpoint-all train.py

cp train.py train.py.orig
step "2. In hindsight, add a print after the epoch's own print"
"$PYTHON" - <<'PY'
from pathlib import Path

path = Path("train.py")
src = path.read_text()
anchor = '    print(f"epoch {epoch} train_loss {train_loss / n_train:.4f} valid_acc {valid_acc:.4f}")\n'
added = '    print(f"hindsight epoch {epoch} weight_norm {model.fc1.weight.norm().item():.4f}")\n'
if src.count(anchor) != 1:
    raise SystemExit("demo: the epoch print in train.py was not found; cannot add the hindsight print")
path.write_text(src.replace(anchor, anchor + added))
PY
diff -u train.py.orig train.py || true
rm train.py.orig

step "3. florc replay train.py --epochs 5-8  (restores epoch 4's checkpoint, re-runs what the new print needs)"
"$FLORC" replay train.py --epochs 5-8

step "4. florc runs  (the store: recorded runs and their replays)"
"$FLORC" runs

step "5. florc logs  (values printed while recording and replaying)"
"$FLORC" logs

step "Done. (Set KEEP_DEMO=1 to keep the work folder.)"
