"""Module-level training loop: data, model, optimizer and the epoch loop all
live at the top level of the script (no functions). Each epoch iterates over a
shuffled DataLoader that owns its own seeded generator, trains a small MLP on a
synthetic regression task, and prints the mean epoch loss.
"""
import argparse
import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=0.05)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
random.seed(0)
np.random.seed(0)

X = torch.randn(256, 10)
true_w = torch.randn(10, 1)
y = X @ true_w + 0.1 * torch.randn(256, 1)

dataset = TensorDataset(X, y)
loader = DataLoader(
    dataset,
    batch_size=args.batch_size,
    shuffle=True,
    generator=torch.Generator().manual_seed(0),
)

model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
loss_fn = nn.MSELoss()

for epoch in range(args.epochs):
    total = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * xb.size(0)
    print(f"epoch {epoch} loss {total / len(dataset):.6f}")

final_loss = loss_fn(model(X), y).item()
print(f"final loss {final_loss:.6f}")
