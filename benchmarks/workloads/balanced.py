"""Benchmark workload: a few MB of state against about half a second of training per epoch.

A 3-layer MLP (128 -> 512 -> 512 -> 10, ~330 K parameters) trained with Adam on a synthetic,
seeded dataset held in memory and read through a shuffling DataLoader (like mlp10.py). A
checkpoint copies the model, its gradients, Adam's two moments and the loader with its dataset:
about 10 MB with the defaults. Prints one line per epoch. Nothing in it knows about florc.
"""

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--samples", type=int, default=8192, help="dataset size (the size knob)")
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--hidden", type=int, default=512)
parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
args = parser.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(0)

n_features, n_classes = 128, 10
centers = torch.randn(n_classes, n_features)
labels = torch.randint(0, n_classes, (args.samples,))
inputs = centers[labels] + 6.0 * torch.randn(args.samples, n_features)
train_loader = DataLoader(
    TensorDataset(inputs, labels),
    batch_size=args.batch_size,
    shuffle=True,
    generator=torch.Generator().manual_seed(0),
)

model = nn.Sequential(
    nn.Linear(n_features, args.hidden),
    nn.ReLU(),
    nn.Linear(args.hidden, args.hidden),
    nn.ReLU(),
    nn.Linear(args.hidden, n_classes),
)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(args.epochs):
    total_loss = 0.0
    correct = 0
    for xb, yb in train_loader:
        optimizer.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(yb)
        correct += (out.argmax(dim=1) == yb).sum().item()
    print(f"epoch {epoch} loss {total_loss / args.samples:.6f} acc {correct / args.samples:.4f}")
