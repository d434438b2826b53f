"""Trainer-class layout: the epoch and batch loops live in a local module
(trainer.py, class Trainer with fit(self, epochs)), while this entry script
builds the data, model and optimizer, registers a callback that appends each
epoch's loss to a history list, creates the Trainer and calls fit().
"""
import argparse
import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainer import Trainer

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--lr", type=float, default=0.05)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(3)
random.seed(3)
np.random.seed(3)

X = torch.randn(320, 6)
y = (X.sum(dim=1) + 0.5 * X[:, 0] ** 2 > 0.5).long()
loader = DataLoader(
    TensorDataset(X, y),
    batch_size=32,
    shuffle=True,
    generator=torch.Generator().manual_seed(3),
)

model = nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

history = []


def record_loss(trainer, epoch):
    history.append(round(trainer.epoch_loss, 6))


trainer = Trainer(model, optimizer, nn.CrossEntropyLoss(), loader, callbacks=[record_loss])
trainer.fit(args.epochs)

acc = trainer.evaluate(X, y)
print(f"history {history}")
print(f"train acc {acc:.4f}")
print(f"HINDSIGHT after acc={acc:.6f} last_loss={history[-1]:.6f} n={len(history)}")
