#!/usr/bin/env bash
# florc demo: record two training runs, add a print statement afterwards, replay only the
# epochs you ask for, replay the statement across both runs, then look at the store, the
# values by name, a plot and a TensorBoard export. Run it with `make demo`.
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

step "1b. florc record --checkpoint-all train.py --lr 0.1  (a second run, another learning rate)"
"$FLORC" record --checkpoint-all train.py --lr 0.1

cp train.py train.py.orig
step "2. In hindsight, add a print after the epoch's own print"
"$PYTHON" - <<'PY'
from pathlib import Path

path = Path("train.py")
src = path.read_text()
anchor = '    print(f"epoch {epoch} train_loss {train_loss / n_train:.4f} valid_acc {valid_acc:.4f}")\n'
added = '    print(f"hindsight: epoch {epoch} weight_norm {model.fc1.weight.norm().item():.4f}")\n'
if src.count(anchor) != 1:
    raise SystemExit("demo: the epoch print in train.py was not found; cannot add the hindsight print")
path.write_text(src.replace(anchor, anchor + added))
PY
diff -u train.py.orig train.py || true
rm train.py.orig

step "3. florc replay train.py --epochs 5-8  (the latest run: restores epoch 4's checkpoint, re-runs what the new print needs)"
"$FLORC" replay train.py --epochs 5-8

step "4. florc replay train.py --runs all  (the new print, placed into every recorded run and replayed, in parallel)"
"$FLORC" replay train.py --runs all

step "5. florc runs  (the store: recorded runs with their arguments, and their replays)"
"$FLORC" runs

step "6. florc logs --where lr=0.1 --format csv  (the values by name: one row per epoch, one column per name)"
"$FLORC" logs --where lr=0.1 --format csv

step "7. florc plot weight_norm --out weight_norm.png  (the replayed value over epochs, one line per run)"
"$FLORC" plot weight_norm --out weight_norm.png
ls -l weight_norm.png

step "8. florc export --to tensorboard  (recorded and replayed values as TensorBoard event files, a folder per run)"
"$FLORC" export --to tensorboard

step "Done. (Set KEEP_DEMO=1 to keep the work folder.)"
