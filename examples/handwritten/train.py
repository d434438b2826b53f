"""A training script that says itself what florc checkpoints, with florc's public API only:
`florc.loop` marks the epochs (the main loop) and the batches inside them, `florc.checkpoint`
names the state every epoch boundary checkpoints and replay restores in place. `florc record`
leaves its loops as written. Run with plain Python, the florc calls do nothing.
"""
import torch
from torch import nn

import florc

torch.manual_seed(0)
torch.set_num_threads(1)
x = torch.randn(256, 8)
y = x @ torch.randn(8, 1) + 0.1 * torch.randn(256, 1)

model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
loss_fn = nn.MSELoss()
history = {"best": float("inf"), "losses": []}

with florc.checkpoint(model=model, optimizer=optimizer, scheduler=scheduler, history=history):
    for epoch in florc.loop("epoch", range(8)):
        order = torch.randperm(256)  # a new shuffle each epoch, from torch's global generator
        total = 0.0
        for i in florc.loop("batch", range(0, 256, 32)):
            idx = order[i : i + 32]
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        scheduler.step()
        history["losses"].append(total / 8)
        history["best"] = min(history["best"], total / 8)
        print(f"epoch {epoch} loss {total / 8:.6f}")

print(f"best {history['best']:.6f} after {len(history['losses'])} epochs")
