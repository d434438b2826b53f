"""Benchmark workload: an iteration-based transformer trainer (a `while` loop with a counter).

A small causal transformer (2 layers, 4 heads) trained on random windows of the standard
library's sources (characters; nothing to download). There are no epochs: the loop runs
`--iters` steps, drawing a random batch each step, evaluating every `--eval-every` steps and
stepping a cosine learning-rate schedule. Seeded; prints at every evaluation. Nothing in it
knows about florc.
"""

import argparse
import sysconfig
from pathlib import Path

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--iters", type=int, default=300)
parser.add_argument("--eval-every", type=int, default=50)
parser.add_argument("--chars", type=int, default=100_000)
parser.add_argument("--seq", type=int, default=64)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--dim", type=int, default=64)
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
data = torch.tensor([vocab.index(c) for c in text], dtype=torch.long)


class TinyTransformer(nn.Module):
    def __init__(self, n_vocab: int, dim: int, seq: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(n_vocab, dim)
        self.pos = nn.Parameter(torch.zeros(seq, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 4 * dim, dropout=0.1, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(dim, n_vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq))

    def forward(self, x):
        h = self.tok(x) + self.pos[: x.shape[1]]
        return self.head(self.blocks(h, mask=self.mask, is_causal=True))


def batch():
    starts = torch.randint(0, len(data) - args.seq - 1, (args.batch_size,))
    x = torch.stack([data[s : s + args.seq] for s in starts])
    y = torch.stack([data[s + 1 : s + args.seq + 1] for s in starts])
    return x, y


model = TinyTransformer(len(vocab), args.dim, args.seq)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.iters)
loss_fn = nn.CrossEntropyLoss()

step = 0
while step < args.iters:
    model.train()
    x, y = batch()
    loss = loss_fn(model(x).reshape(-1, len(vocab)), y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    step += 1
    if step % args.eval_every == 0:
        model.eval()
        with torch.no_grad():
            x, y = batch()
            val = loss_fn(model(x).reshape(-1, len(vocab)), y.reshape(-1)).item()
        print(f"step {step} train_loss {loss.item():.4f} val_loss {val:.4f}")
