"""An LBFGS optimizer with a `closure()` defined inside the loop body; a nested plotting
function; a file (a figure and a checkpoint) written every step.
"""
import torch
from torch import nn

torch.manual_seed(0)
t = torch.linspace(-2, 2, 64).unsqueeze(1)
target = torch.sin(3 * t) + 0.1 * torch.randn_like(t)
model = nn.Sequential(nn.Linear(1, 20), nn.Tanh(), nn.Linear(20, 1))
optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)


def plot(epoch, values):
    def bar(v):  # a text "figure": one bar per point
        return "#" * int(10 * (v + 1.5))

    with open(f"fit_{epoch % 2}.txt", "w") as f:
        for v in values[::8]:
            f.write(bar(float(v)) + "\n")


for epoch in range(8):
    for step in range(2):

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(t), target)
            loss.backward()
            return loss

        loss = optimizer.step(closure)
        torch.save(model.state_dict(), "last.pt")
    with torch.no_grad():
        plot(epoch, model(t).squeeze(1))
    print(f"epoch {epoch} loss {loss.item():.6f}")
