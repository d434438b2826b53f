"""Small CNN on scikit-learn's bundled 8x8 digits (load_digits, no download):
a fixed train/validation split, a shuffled DataLoader with its own seeded
generator, two conv layers and a linear head; prints train loss, train
accuracy and validation accuracy for each epoch.
"""
import argparse
import random

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=0.003)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(0)
random.seed(0)
np.random.seed(0)

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
labels = torch.tensor(digits.target, dtype=torch.long)
order = torch.from_numpy(np.random.permutation(len(labels)))
images, labels = images[order], labels[order]
n_train = 1400
train_ds = TensorDataset(images[:n_train], labels[:n_train])
val_x, val_y = images[n_train:], labels[n_train:]
train_loader = DataLoader(
    train_ds,
    batch_size=args.batch_size,
    shuffle=True,
    generator=torch.Generator().manual_seed(0),
)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


model = SmallCNN()
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(args.epochs):
    model.train()
    total = 0.0
    correct = 0
    for batch_idx, (xb, yb) in enumerate(train_loader):
        optimizer.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        optimizer.step()
        if batch_idx % 5 == 0:
            print(f"HINDSIGHT batch e={epoch} step={batch_idx} loss={loss.item():.6f}")
        total += loss.item() * xb.size(0)
        correct += (out.argmax(dim=1) == yb).sum().item()
    model.eval()
    with torch.no_grad():
        val_acc = (model(val_x).argmax(dim=1) == val_y).float().mean().item()
    print(f"epoch {epoch} loss {total / n_train:.6f} train_acc {correct / n_train:.4f} val_acc {val_acc:.4f}")

print(f"final val_acc {val_acc:.4f}")
