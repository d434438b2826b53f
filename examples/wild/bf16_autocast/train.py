"""Mixed precision on the CPU: the forward pass under `torch.autocast("cpu", dtype=torch.bfloat16)`,
the loss scaled by a GradScaler.
"""
import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(128, 16)
y = (x[:, :4].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = torch.amp.GradScaler("cpu", init_scale=256.0)

for epoch in range(6):
    for i in range(0, 128, 32):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x[i : i + 32])
            loss = nn.functional.cross_entropy(logits, y[i : i + 32])
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    print(f"epoch {epoch} loss {loss.item():.5f} scale {scaler.get_scale():.1f}")
