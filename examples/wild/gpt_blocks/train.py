"""GPT style: a ModuleDict holding embeddings and a ModuleList of blocks that `forward` runs one
after the other (`for block in self.transformer.h: x = block(x)`), blocks built from attention
and MLP submodules, the token embedding tied to the output head, an AdamW optimizer built from
two parameter groups (decay / no decay), a cosine learning-rate schedule set by hand in each
group, and an epoch loop with a batch loop and an evaluation loop.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

torch.manual_seed(7)
vocab_size, block_size, n_embd, n_head, n_layer = 16, 8, 16, 2, 2
epochs, batches, batch_size = 6, 4, 4
base_lr, warmup = 3e-3, 4

corpus = torch.randint(0, vocab_size, (600,))
corpus[1::2] = (corpus[0::2] * 3 + 1) % vocab_size


def get_batch(split):
    data = corpus[:500] if split == "train" else corpus[500:]
    ix = torch.randint(len(data) - block_size - 1, (batch_size,))
    x = torch.stack([data[i : i + block_size] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])
    return x, y


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.register_buffer("mask", torch.tril(torch.ones(block_size, block_size)))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(n_embd, dim=2)
        q = q.view(B, T, n_head, C // n_head).transpose(1, 2)
        k = k.view(B, T, n_head, C // n_head).transpose(1, 2)
        v = v.view(B, T, n_head, C // n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        att = att.masked_fill(self.mask[:T, :T] == 0, float("-inf")).softmax(dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = SelfAttention()
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.ModuleDict(dict(fc=nn.Linear(n_embd, 4 * n_embd), proj=nn.Linear(4 * n_embd, n_embd)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        m = self.mlp
        return x + m.proj(F.gelu(m.fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=nn.Embedding(block_size, n_embd),
                h=nn.ModuleList([Block() for _ in range(n_layer)]),
                ln_f=nn.LayerNorm(n_embd),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        pos = torch.arange(idx.size(1))
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, vocab_size), targets.view(-1))

    def configure_optimizers(self, weight_decay, lr):
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        groups = [
            {"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def get_lr(it, total):
    if it < warmup:
        return base_lr * (it + 1) / warmup
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (it - warmup) / (total - warmup)))


@torch.no_grad()
def estimate_loss(model):
    model.eval()
    losses = []
    for _ in range(2):
        _, loss = model(*get_batch("val"))
        losses.append(loss.item())
    model.train()
    return sum(losses) / len(losses)


model = GPT()
optimizer = model.configure_optimizers(0.1, base_lr)
step = 0
for epoch in range(epochs):
    for b in range(batches):
        lr = get_lr(step, epochs * batches)
        for group in optimizer.param_groups:
            group["lr"] = lr
        X, Y = get_batch("train")
        logits, loss = model(X, Y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
    val = estimate_loss(model)
    print(f"epoch {epoch}: loss {loss.item():.4f} val {val:.4f} lr {lr:.5f}")
print(f"tied: {model.transformer.wte.weight is model.lm_head.weight}")
