"""Benchmark workload: a character-level recurrent language model on Python's own sources.

The text is the standard library's source files (they ship with Python: nothing to download),
read in a fixed order. A one-layer GRU learns to predict the next character; an epoch is one
pass over a fixed set of sequences, in a shuffled order. Seeded; prints one line per epoch.
Nothing in it knows about florc.
"""

import argparse
import sysconfig
from pathlib import Path

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--chars", type=int, default=200_000, help="characters of text used")
parser.add_argument("--seq", type=int, default=64)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--hidden", type=int, default=128)
parser.add_argument("--threads", type=int, default=1)
args = parser.parse_args()

if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(0)

stdlib = Path(sysconfig.get_paths()["stdlib"])
text = ""
for path in sorted(stdlib.glob("*.py")):
    text += path.read_text(encoding="utf-8", errors="replace")
    if len(text) >= args.chars:
        break
text = text[: args.chars]
vocab = sorted(set(text))
index = {c: i for i, c in enumerate(vocab)}
data = torch.tensor([index[c] for c in text], dtype=torch.long)
n_seq = (len(data) - 1) // args.seq
inputs = data[: n_seq * args.seq].view(n_seq, args.seq)
targets = data[1 : n_seq * args.seq + 1].view(n_seq, args.seq)


class CharModel(nn.Module):
    def __init__(self, n_vocab: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_vocab, hidden)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_vocab)

    def forward(self, x):
        h, _ = self.rnn(self.embed(x))
        return self.out(h)


model = CharModel(len(vocab), args.hidden)
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
loss_fn = nn.CrossEntropyLoss()
order = torch.Generator().manual_seed(1)

for epoch in range(args.epochs):
    perm = torch.randperm(n_seq, generator=order)
    total = 0.0
    batches = 0
    for start in range(0, n_seq - args.batch_size + 1, args.batch_size):
        idx = perm[start : start + args.batch_size]
        logits = model(inputs[idx])
        loss = loss_fn(logits.reshape(-1, len(vocab)), targets[idx].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total += loss.item()
        batches += 1
    print(f"epoch {epoch} loss {total / batches:.4f}")
