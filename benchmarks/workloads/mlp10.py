"""Benchmark workload: a 3-layer MLP on synthetic classification data, 10 epochs.

Synthetic data (seeded torch tensors, no download, no scikit-learn import) so that start-up is
just python + torch. Single-threaded and seeded; an epoch takes a few tenths of a second on a
CPU core. Prints one line per epoch. Nothing in it knows about florc.
"""

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--samples", type=int, default=12288)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--hidden", type=int, default=512)
args = parser.parse_args()

torch.set_num_threads(1)
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
optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(1, args.epochs + 1):
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
