"""No seed at all: the weights' initialisation and the shuffle differ from run to run, so only
the recording itself can say what a replay must print. The vocabulary comes from a `set()` of
words, whose order depends on string hashing (PYTHONHASHSEED), drawn anew by every process.
"""
import random

import torch
from torch import nn

text = (
    "the model reads the words and guesses the next word in the line the words come "
    "from a short text that repeats the same few words so the model can learn them"
).split()
vocab = list(set(text))  # order: string hashing
index = {w: i for i, w in enumerate(vocab)}
pairs = list(zip(text, text[1:]))
model = nn.Sequential(nn.Embedding(len(vocab), 8), nn.Linear(8, len(vocab)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

for epoch in range(6):
    random.shuffle(pairs)
    total = 0.0
    for start in range(0, len(pairs), 8):
        batch = torch.tensor([(index[a], index[b]) for a, b in pairs[start : start + 8]])
        loss = nn.functional.cross_entropy(model(batch[:, 0]), batch[:, 1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
    print(f"epoch {epoch} loss {total:.6f} first {vocab[0]} guess {vocab[model(torch.tensor([0])).argmax().item()]}")
