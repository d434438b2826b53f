"""Mixed random number generators: each epoch shuffles the sample indices with
np.random.permutation, each batch is flipped (a reversed-feature
"augmentation") when random.random() < 0.5, and the model uses torch dropout.
numpy, Python and torch RNG state all feed into training, so a faithful replay
must restore all three.
"""
import argparse
import random

import numpy as np
import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--batch-size", type=int, default=25)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(42)
random.seed(42)
np.random.seed(42)

n = 200
X = torch.from_numpy(np.random.randn(n, 10).astype(np.float32))
y = (X[:, :5].sum(dim=1) > X[:, 5:].sum(dim=1)).long()

model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(args.epochs):
    model.train()
    perm = np.random.permutation(n)
    total = 0.0
    flips = 0
    for start in range(0, n, args.batch_size):
        idx = torch.from_numpy(perm[start:start + args.batch_size])
        xb, yb = X[idx], y[idx]
        if random.random() < 0.5:
            xb = torch.flip(xb, dims=[1])
            yb = 1 - yb
            flips += 1
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * xb.size(0)
    print(f"epoch {epoch} loss {total / n:.6f} flips {flips}")
    print(f"HINDSIGHT epoch e={epoch} perm_head={perm[:5].tolist()} flips={flips}")

model.eval()
with torch.no_grad():
    acc = (model(X).argmax(dim=1) == y).float().mean().item()
print(f"train acc {acc:.4f}")
