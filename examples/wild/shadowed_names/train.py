"""A loop variable named `iter` (shadowing the builtin), and two names for one model
(`m = model.to(device)`): training goes through one name, logging through the other.
"""
import torch
from torch import nn

torch.manual_seed(0)
device = "cpu"
model = nn.Linear(5, 1)
m = model.to(device)  # the same object under a second name
optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
x = torch.randn(64, 5)
y = x @ torch.arange(5.0).unsqueeze(1)

for iter in range(7):
    for b in range(0, 64, 16):
        loss = nn.functional.mse_loss(m(x[b : b + 16]), y[b : b + 16])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"iter {iter} loss {loss.item():.6f}")
