"""Demo training script for florc: a small MLP on scikit-learn's bundled 8x8 digits.

No download needed (load_digits ships with scikit-learn). Seeded, single-threaded, a shuffled
DataLoader with its own generator; prints one line per epoch. Runs in a few seconds on a CPU.
This is an ordinary script: nothing in it knows about florc.
"""
import argparse
import random

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=0.05)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
random.seed(0)
np.random.seed(0)

digits = load_digits()
x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
y = torch.tensor(digits.target, dtype=torch.long)
order = torch.from_numpy(np.random.permutation(len(y)))
x, y = x[order], y[order]
n_train = 1400
train_loader = DataLoader(
    TensorDataset(x[:n_train], y[:n_train]),
    batch_size=args.batch_size,
    shuffle=True,
    generator=torch.Generator().manual_seed(0),
)
valid_x, valid_y = x[n_train:], y[n_train:]


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, inputs):
        return self.fc2(torch.relu(self.fc1(inputs)))


model = MLP()
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(1, args.epochs + 1):
    model.train()
    train_loss = 0.0
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        train_loss += loss.item() * len(yb)
    model.eval()
    with torch.no_grad():
        valid_acc = (model(valid_x).argmax(dim=1) == valid_y).float().mean().item()
    print(f"epoch {epoch} train_loss {train_loss / n_train:.4f} valid_acc {valid_acc:.4f}")
