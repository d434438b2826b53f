"""Benchmark workload: an embedding table of which each epoch changes a few rows (chunking).

A 41 MB table (160 K rows x 64) trained with sparse gradients and SGD under a small linear head.
Each batch looks up ids drawn mostly (99.5%) from a hot set, the first 2,048 rows, and otherwise
uniformly from the whole table, as the vocabularies of recommenders and language models skew: an
epoch changes the hot rows and a handful of others. Every checkpoint of a batch loop copies the
table (its version counter moved); stored in 1 MiB chunks, only the chunks holding changed rows
are new. Seeded; prints the table's size, then one line per epoch. Nothing in it knows about
florc.
"""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--rows", type=int, default=160_000, help="table rows (the size knob)")
parser.add_argument("--dim", type=int, default=64)
parser.add_argument("--batches", type=int, default=10, help="batches per epoch")
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--hot", type=int, default=2048, help="rows most lookups hit")
parser.add_argument("--cold", type=float, default=0.005, help="share of uniform lookups")
parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
args = parser.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(0)

n_classes = 10
table = nn.Embedding(args.rows, args.dim, sparse=True)
head = nn.Linear(args.dim, n_classes)
optimizer = torch.optim.SGD([*table.parameters(), *head.parameters()], lr=0.05)
loss_fn = nn.CrossEntropyLoss()
table_bytes = table.weight.numel() * table.weight.element_size()
print(f"table {table_bytes} bytes")

for epoch in range(args.epochs):
    total_loss = 0.0
    for _step in range(args.batches):
        ids = torch.randint(0, args.hot, (args.batch_size,))
        cold = torch.rand(args.batch_size) < args.cold
        ids[cold] = torch.randint(0, args.rows, (int(cold.sum()),))
        yb = ids % n_classes
        optimizer.zero_grad()
        loss = loss_fn(head(table(ids)), yb)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    print(f"epoch {epoch} loss {total_loss / args.batches:.6f}")
