"""Word-level tokenizing of a text file: a vocabulary built with a double loop over lines and
words, before any training happens."""

from pathlib import Path

import torch


class Dictionary:
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    def __init__(self, path):
        self.dictionary = Dictionary()
        tokens = []
        with open(Path(path), encoding="utf-8") as f:
            for line in f:
                for word in line.split() + ["<eos>"]:
                    tokens.append(self.dictionary.add_word(word))
        self.ids = torch.tensor(tokens, dtype=torch.long)

    def batches(self, batch_size):
        """The token ids as batch_size rows, dropping what does not fill the last column."""
        n = self.ids.size(0) // batch_size
        return self.ids[: n * batch_size].view(batch_size, n)
