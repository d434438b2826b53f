"""Benchmark workload: a large frozen submodule under a small trained head (storage dedup).

A pretrained-style backbone — a 41 MB embedding table (160 K rows x 64, requires_grad False) —
feeds a small MLP head (~10 K parameters) trained with Adam. Every checkpoint holds the whole
model, so without sharing each one would carry the frozen table again; the store keeps
identical tensors once. Seeded; prints the frozen and trained sizes, then one line per epoch.
Nothing in it knows about florc.
"""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--rows", type=int, default=160_000, help="frozen rows (the size knob)")
parser.add_argument("--dim", type=int, default=64)
parser.add_argument("--batches", type=int, default=20, help="batches per epoch")
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--bag", type=int, default=8, help="ids per example")
parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
args = parser.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(0)

n_classes = 10


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.EmbeddingBag(args.rows, args.dim, mode="mean")
        self.head = nn.Sequential(nn.Linear(args.dim, 128), nn.ReLU(), nn.Linear(128, n_classes))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(ids))


model = Classifier()
model.backbone.requires_grad_(False)
trained = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.Adam(trained, lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
frozen_bytes = sum(p.numel() * p.element_size() for p in model.backbone.parameters())
trained_bytes = sum(p.numel() * p.element_size() for p in trained)
print(f"frozen {frozen_bytes} bytes, trained {trained_bytes} bytes")

for epoch in range(args.epochs):
    total_loss = 0.0
    for _step in range(args.batches):
        ids = torch.randint(0, args.rows, (args.batch_size, args.bag))
        yb = ids[:, 0] % n_classes
        optimizer.zero_grad()
        loss = loss_fn(model(ids), yb)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    print(f"epoch {epoch} loss {total_loss / args.batches:.6f}")
