"""main() / train(epoch) / evaluate() layout in the style of the PyTorch MNIST
example: the model, optimizer and data loaders are module-level globals read by
the functions. main() runs a 1-based epoch loop, saves best.pt whenever the
validation loss improves, and after the loop reloads best.pt and evaluates it
once more.
"""
import argparse
import os
import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--batch-size", type=int, default=32)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(1)
random.seed(1)
np.random.seed(1)

HERE = os.path.dirname(os.path.abspath(__file__))
BEST_PATH = os.path.join(HERE, "best.pt")

X = torch.randn(400, 8)
y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).long()
train_ds = TensorDataset(X[:300], y[:300])
val_ds = TensorDataset(X[300:], y[300:])
train_loader = DataLoader(
    train_ds,
    batch_size=args.batch_size,
    shuffle=True,
    generator=torch.Generator().manual_seed(1),
)
val_loader = DataLoader(val_ds, batch_size=100)

model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()


def train(epoch):
    model.train()
    total = 0.0
    for batch_idx, (xb, yb) in enumerate(train_loader):
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        print(f"HINDSIGHT batch e={epoch} step={batch_idx} loss={loss.item():.6f}")
        total += loss.item() * xb.size(0)
    train_loss = total / len(train_ds)
    print(f"epoch {epoch} train_loss {train_loss:.6f}")
    return train_loss


def evaluate():
    model.eval()
    total = 0.0
    correct = 0
    with torch.no_grad():
        for xb, yb in val_loader:
            out = model(xb)
            total += loss_fn(out, yb).item() * xb.size(0)
            correct += (out.argmax(dim=1) == yb).sum().item()
    return total / len(val_ds), correct / len(val_ds)


def main():
    best_val = float("inf")
    for epoch in range(1, args.epochs + 1):
        train(epoch)
        val_loss, val_acc = evaluate()
        print(f"epoch {epoch} val_loss {val_loss:.6f} val_acc {val_acc:.4f}")
        if val_loss < best_val:
            best_val = val_loss
            torch.save(model.state_dict(), BEST_PATH)
            print(f"epoch {epoch} saved best.pt")
    model.load_state_dict(torch.load(BEST_PATH))
    val_loss, val_acc = evaluate()
    print(f"best val_loss {val_loss:.6f} val_acc {val_acc:.4f}")


if __name__ == "__main__":
    main()
