"""nanoGPT-style while loop: `iter_num = 0`, `while True:` draws one random
batch per iteration with torch.randint from a token tensor, takes one optimizer
step on a tiny bigram language model, increments iter_num and breaks once
max_iters is reached. Python's `random` picks the batch size of each
iteration, so the Python RNG state matters as well as torch's.
"""
import argparse
import random

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

parser = argparse.ArgumentParser()
parser.add_argument("--max-iters", type=int, default=6)
parser.add_argument("--block-size", type=int, default=8)
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()

torch.set_num_threads(1)
torch.manual_seed(1337)
random.seed(1337)
np.random.seed(1337)

vocab_size = 16
data = torch.randint(0, vocab_size, (2000,))
# make the sequence somewhat predictable: every other token follows its predecessor
data[1::2] = (data[0::2] + 1) % vocab_size


def get_batch(batch_size):
    ix = torch.randint(len(data) - args.block_size - 1, (batch_size,))
    x = torch.stack([data[i:i + args.block_size] for i in ix])
    y = torch.stack([data[i + 1:i + 1 + args.block_size] for i in ix])
    return x, y


class Bigram(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, 32)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(32, vocab_size)

    def forward(self, idx, targets):
        logits = self.head(self.drop(self.emb(idx)))
        loss = F.cross_entropy(logits.view(-1, vocab_size), targets.view(-1))
        return logits, loss


model = Bigram()
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
max_iters = args.max_iters

iter_num = 0
while True:
    batch_size = random.choice([8, 16, 32])
    X, Y = get_batch(batch_size)
    _, loss = model(X, Y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    print(f"iter {iter_num} batch_size {batch_size} loss {loss.item():.6f}")
    iter_num += 1
    if iter_num >= max_iters:
        break

model.eval()
with torch.no_grad():
    X, Y = get_batch(64)
    _, val_loss = model(X, Y)
print(f"final val_loss {val_loss.item():.6f}")
