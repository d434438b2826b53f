"""Early stopping: up to max_epochs epochs of training with a validation pass
after each one; the best weights are kept in memory with
copy.deepcopy(model.state_dict()), a patience counter tracks epochs without
improvement, and the loop breaks out early once patience runs out. The best
state is restored after the loop. The training set is tiny (40 samples) and
the targets noisy, so the wide MLP overfits quickly and the loop stops after
about five of its max_epochs=8 epochs.
"""
import argparse
import copy
import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--max-epochs", type=int, default=8)
parser.add_argument("--patience", type=int, default=2)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(5)
random.seed(5)
np.random.seed(5)

X = torch.randn(300, 20)
w = torch.zeros(20, 1)
w[:2] = 1.0
y = X @ w + 2.0 * torch.randn(300, 1)
train_ds = TensorDataset(X[:40], y[:40])
X_val, y_val = X[40:], y[40:]
loader = DataLoader(
    train_ds,
    batch_size=8,
    shuffle=True,
    generator=torch.Generator().manual_seed(5),
)

model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
loss_fn = nn.MSELoss()

best_val = float("inf")
best_state = None
bad_epochs = 0
for epoch in range(args.max_epochs):
    model.train()
    total = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * xb.size(0)
    model.eval()
    with torch.no_grad():
        val_loss = loss_fn(model(X_val), y_val).item()
    print(f"epoch {epoch} train_loss {total / len(train_ds):.6f} val_loss {val_loss:.6f}")
    if val_loss < best_val:
        best_val = val_loss
        best_state = copy.deepcopy(model.state_dict())
        bad_epochs = 0
    else:
        bad_epochs += 1
        if bad_epochs >= args.patience:
            print(f"early stop at epoch {epoch}")
            break

model.load_state_dict(best_state)
with torch.no_grad():
    restored = loss_fn(model(X_val), y_val).item()
print(f"restored best val_loss {restored:.6f}")
print(f"HINDSIGHT after restored={restored:.6f} best_val={best_val:.6f} last_epoch={epoch}")
