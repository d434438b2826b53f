"""Benchmark workload: much compute, tiny state — a ~100 K-parameter MLP, many batches per epoch.

Each batch is drawn fresh from torch's global RNG (a fixed random "teacher" network labels it),
so there is no dataset in memory: the state a checkpoint copies is the model, its gradients and
the optimizer's momentum (about 1.2 MB), against about a second of training per epoch with the
defaults. Seeded; prints one line per epoch. Nothing in it knows about florc.
"""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=16)
parser.add_argument("--batches", type=int, default=60, help="batches per epoch (the size knob)")
parser.add_argument("--batch-size", type=int, default=512)
parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
args = parser.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(0)

n_features, hidden, n_classes = 64, 256, 10
teacher = torch.randn(n_features, n_classes)
model = nn.Sequential(
    nn.Linear(n_features, hidden),
    nn.ReLU(),
    nn.Linear(hidden, hidden),
    nn.ReLU(),
    nn.Linear(hidden, n_features),
    nn.ReLU(),
    nn.Linear(n_features, n_classes),
)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(args.epochs):
    total_loss = 0.0
    correct = 0
    for _step in range(args.batches):
        xb = torch.randn(args.batch_size, n_features)
        yb = (xb @ teacher).argmax(dim=1)
        optimizer.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
        correct += (out.argmax(dim=1) == yb).sum().item()
    seen = args.batches * args.batch_size
    print(f"epoch {epoch} loss {total_loss / args.batches:.6f} acc {correct / seen:.4f}")
