"""Benchmark workload: a small CNN on scikit-learn's bundled handwritten digits.

The 1,797 8x8 grey-scale images of `sklearn.datasets.load_digits` (they ship with scikit-learn:
nothing to download), upsampled to 16x16 and split 1,500 / 297 into training and test sets. Two
convolutional layers and a linear head, trained with SGD and momentum through a shuffling
DataLoader; test accuracy after every epoch. Seeded; prints one line per epoch. Nothing in it
knows about florc.
"""

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--channels", type=int, default=32, help="width of the first conv layer")
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
args = parser.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(0)

digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
images = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False)
labels = torch.tensor(digits.target, dtype=torch.long)
train_x, train_y = images[:1500], labels[:1500]
test_x, test_y = images[1500:], labels[1500:]
train_loader = DataLoader(
    TensorDataset(train_x, train_y),
    batch_size=args.batch_size,
    shuffle=True,
    generator=torch.Generator().manual_seed(0),
)


class DigitsCNN(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.head = nn.Linear(2 * channels * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


model = DigitsCNN(args.channels)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(args.epochs):
    model.train()
    total_loss = 0.0
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(yb)
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    print(f"epoch {epoch} loss {total_loss / len(train_x):.4f} test_acc {accuracy:.4f}")
