"""Flat loop with a single training step per iteration: `for it in range(6):`
samples one fresh random batch from a seeded torch RNG, takes one Adam step
on a small linear classifier, and prints the step's loss. There is no nested
loop at all; after the loop it reports the accuracy on a fixed test batch.
"""
import argparse
import random

import numpy as np
import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--iters", type=int, default=6)
parser.add_argument("--batch-size", type=int, default=64)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(7)
random.seed(7)
np.random.seed(7)

centers = torch.randn(3, 5) * 2.0


def sample(n):
    labels = torch.randint(0, 3, (n,))
    points = centers[labels] + torch.randn(n, 5)
    return points, labels


model = nn.Linear(5, 3)
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
loss_fn = nn.CrossEntropyLoss()

for it in range(args.iters):
    xb, yb = sample(args.batch_size)
    optimizer.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    print(f"it {it} loss {loss.item():.6f}")

x_test, y_test = sample(500)
with torch.no_grad():
    acc = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
print(f"test acc {acc:.4f}")
print(f"HINDSIGHT after acc={acc:.6f}")
