"""A word-level LSTM language model on a small text file, tokenized by the local data module."""

from pathlib import Path

import torch
import torch.nn as nn

from data import Corpus

torch.manual_seed(0)

embed_size = 16
hidden_size = 24
num_epochs = 6
batch_size = 4
seq_length = 6
learning_rate = 0.01

corpus = Corpus(Path(__file__).parent / "data" / "train.txt")
ids = corpus.batches(batch_size)
vocab_size = len(corpus.dictionary)
print(f"vocabulary {vocab_size} words, {ids.size(1)} tokens per row")


class LanguageModel(nn.Module):
    def __init__(self, vocab_size, embed_size, hidden_size):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.lstm = nn.LSTM(embed_size, hidden_size, batch_first=True)
        self.linear = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, h):
        out, (h, c) = self.lstm(self.embed(x), h)
        out = out.reshape(out.size(0) * out.size(1), out.size(2))
        return self.linear(out), (h, c)


def detach(states):
    return [state.detach() for state in states]


model = LanguageModel(vocab_size, embed_size, hidden_size)
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)

for epoch in range(num_epochs):
    states = (torch.zeros(1, batch_size, hidden_size), torch.zeros(1, batch_size, hidden_size))
    total = 0.0
    for i in range(0, ids.size(1) - seq_length, seq_length):
        inputs = ids[:, i : i + seq_length]
        targets = ids[:, (i + 1) : (i + 1) + seq_length]
        states = detach(states)
        outputs, states = model(inputs, states)
        loss = criterion(outputs, targets.reshape(-1))
        model.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        total += loss.item()
    print(f"epoch {epoch} loss {total:.4f} perplexity {torch.exp(loss).item():.3f}")

print(f"final loss {loss.item():.4f}")
