"""Benchmark workload: a big state and little compute — one checkpoint costs more than an epoch.

A bag-of-ids model: an 80 MB embedding table (250 K rows x 80, trained, dense gradients) under
a small linear head, trained with plain SGD for a couple of small batches per epoch. A checkpoint
copies the table and its gradient (about 160 MB with the defaults); copying, hashing and writing
that takes longer than the epoch's training, so within a small budget checkpoints can only be
occasional. Seeded; prints one line per epoch. Nothing in it knows about florc.
"""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=120)
parser.add_argument("--rows", type=int, default=250_000, help="embedding rows (the size knob)")
parser.add_argument("--dim", type=int, default=80)
parser.add_argument("--batches", type=int, default=2, help="batches per epoch")
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--bag", type=int, default=16, help="ids per example")
parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
args = parser.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(0)

n_classes = 10
embedding = nn.EmbeddingBag(args.rows, args.dim, mode="mean")
head = nn.Linear(args.dim, n_classes)
optimizer = torch.optim.SGD([*embedding.parameters(), *head.parameters()], lr=0.5)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(args.epochs):
    total_loss = 0.0
    for _step in range(args.batches):
        ids = torch.randint(0, args.rows, (args.batch_size, args.bag))
        yb = ids[:, 0] % n_classes
        optimizer.zero_grad()
        loss = loss_fn(head(embedding(ids)), yb)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    print(f"epoch {epoch} loss {total_loss / args.batches:.6f}")
