"""Benchmark workload for a CUDA GPU: a wide MLP whose state (about 400 MB) lives on the GPU.

Five 2048-wide layers (about 34 M parameters) trained with Adam on a synthetic, seeded dataset
held on the GPU. A checkpoint copies the weights, their gradients and Adam's two moments (about
540 MB) from the GPU to pinned host memory. Prints one line per epoch. Nothing in it knows about
florc.
"""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=12)
parser.add_argument("--batches", type=int, default=200, help="batches per epoch")
parser.add_argument("--width", type=int, default=2048)
parser.add_argument("--batch-size", type=int, default=512)
args = parser.parse_args()

torch.manual_seed(0)
device = "cuda"
n_features, n_classes = 256, 10
centers = torch.randn(n_classes, n_features, device=device)
labels = torch.randint(0, n_classes, (args.batches * args.batch_size,), device=device)
inputs = centers[labels] + 4.0 * torch.randn(len(labels), n_features, device=device)

layers = [nn.Linear(n_features, args.width), nn.ReLU()]
for _ in range(4):
    layers += [nn.Linear(args.width, args.width), nn.ReLU()]
model = nn.Sequential(*layers, nn.Linear(args.width, n_classes)).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(args.epochs):
    perm = torch.randperm(len(labels), device=device)
    total = torch.zeros((), device=device)
    for b in range(args.batches):
        idx = perm[b * args.batch_size : (b + 1) * args.batch_size]
        loss = loss_fn(model(inputs[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.detach()
    print(f"epoch {epoch} loss {total.item() / args.batches:.6f}")
