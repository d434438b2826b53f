"""The training loop is not in the script: it is Trainer.fit in the local package mypkg. The
script's per-step work is a callback closure that uses `global`.
"""
import torch
from torch import nn

from mypkg.trainer import Trainer

torch.manual_seed(0)
x = torch.randn(120, 8)
y = (x[:, 0] > x[:, 1]).long()
data = [(x[i : i + 20], y[i : i + 20]) for i in range(0, 120, 20)]
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

running = 0.0
steps_seen = 0


def track(trainer, loss):
    global running, steps_seen
    running = 0.9 * running + 0.1 * loss.item()
    steps_seen += 1


Trainer(model, optimizer, data, callbacks=[track]).fit(6)
print(f"running {running:.5f} steps {steps_seen}")
