"""Gradient accumulation: each epoch walks over micro-batches from a shuffled
DataLoader, scales each micro-batch loss by 1/accum_steps, calls backward()
on every micro-batch and steps the optimizer only every accum_steps
micro-batches. Prints the epoch's mean loss and the number of optimizer steps.
"""
import argparse
import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--accum-steps", type=int, default=4)
parser.add_argument("--micro-batch", type=int, default=8)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(11)
random.seed(11)
np.random.seed(11)

X = torch.randn(256, 12)
w = torch.randn(12, 1)
y = torch.sin(X @ w) + 0.05 * torch.randn(256, 1)
loader = DataLoader(
    TensorDataset(X, y),
    batch_size=args.micro_batch,
    shuffle=True,
    generator=torch.Generator().manual_seed(11),
)

model = nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.Linear(32, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
loss_fn = nn.MSELoss()
accum_steps = args.accum_steps

opt_steps = 0
for epoch in range(args.epochs):
    model.train()
    optimizer.zero_grad()
    running = 0.0
    for micro_step, (xb, yb) in enumerate(loader):
        loss = loss_fn(model(xb), yb)
        running += loss.item()
        (loss / accum_steps).backward()
        if micro_step % accum_steps == 0:
            print(f"HINDSIGHT batch e={epoch} micro={micro_step} loss={loss.item():.6f}")
        if (micro_step + 1) % accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
            opt_steps += 1
    print(f"epoch {epoch} loss {running / len(loader):.6f} opt_steps {opt_steps}")

with torch.no_grad():
    final = loss_fn(model(X), y).item()
print(f"final mse {final:.6f}")
