"""Learning-rate schedule: a StepLR scheduler halves the SGD learning rate
every two epochs and is stepped once per epoch after the batch loop; the
script prints the loss and the current lr at the end of every epoch.
"""
import argparse
import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--lr", type=float, default=0.2)
parser.add_argument("--step-size", type=int, default=2)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(21)
random.seed(21)
np.random.seed(21)

X = torch.randn(300, 4)
y = (X[:, 0] ** 2 + X[:, 1] ** 2 < 1.5).long()
loader = DataLoader(
    TensorDataset(X, y),
    batch_size=30,
    shuffle=True,
    generator=torch.Generator().manual_seed(21),
)

model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=0.5)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(args.epochs):
    total = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * xb.size(0)
    lr = optimizer.param_groups[0]["lr"]
    scheduler.step()
    print(f"epoch {epoch} loss {total / len(X):.6f} lr {lr:.6f}")

with torch.no_grad():
    acc = (model(X).argmax(dim=1) == y).float().mean().item()
print(f"train acc {acc:.4f}")
print(f"HINDSIGHT after acc={acc:.6f} final_lr={scheduler.get_last_lr()[0]:.6f}")
