"""nanoGPT style: defaults as module globals, overridden by `exec(open("configurator.py").read())`;
`while True` with an `iter_num` counter; the next batch fetched before the loop and carried
across iterations; the script's own resume-from-checkpoint path (`init_from`); torch.compile
switched off by a flag.
"""
import os

import torch
from torch import nn
from torch.nn import functional as F

init_from = "scratch"  # or "resume"
out_dir = "out"
batch_size = 4
block_size = 8
learning_rate = 1e-2
max_iters = 10
eval_interval = 4
compile = False
exec(open("configurator.py").read())

torch.manual_seed(1337)
vocab_size = 20
data = torch.randint(0, vocab_size, (3000,))
data[1::3] = (data[0::3] * 7 + 3) % vocab_size


def get_batch():
    ix = torch.randint(len(data) - block_size - 1, (batch_size,))
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])
    return x, y


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, 32)
        self.mix = nn.Linear(32, 32)
        self.head = nn.Linear(32, vocab_size)

    def forward(self, idx, targets):
        logits = self.head(torch.relu(self.mix(self.emb(idx))))
        return logits, F.cross_entropy(logits.view(-1, vocab_size), targets.view(-1))


iter_num = 0
model = TinyLM()
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
if init_from == "resume":
    checkpoint = torch.load(os.path.join(out_dir, "ckpt.pt"))
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    iter_num = checkpoint["iter_num"]
if compile:
    model = torch.compile(model)

X, Y = get_batch()  # fetch the very first batch
while True:
    if iter_num % eval_interval == 0:
        with torch.no_grad():
            _, val = model(*get_batch())
        print(f"step {iter_num}: val loss {val.item():.4f}")
        os.makedirs(out_dir, exist_ok=True)
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter_num": iter_num},
            os.path.join(out_dir, "ckpt.pt"),
        )
    logits, loss = model(X, Y)
    X, Y = get_batch()  # prefetch the next batch while the model runs
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    print(f"iter {iter_num}: loss {loss.item():.4f}")
    iter_num += 1
    if iter_num > max_iters:
        break
