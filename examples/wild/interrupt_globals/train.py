"""The epoch loop inside `try: ... except KeyboardInterrupt:`; train() reads the module globals
`epoch` and `lr` without a `global` statement; `lr /= 4` on a plateau is the whole learning-rate
schedule; after the loop the best model, saved to a file during the loop, is reloaded and tested.
"""
import torch
from torch import nn

torch.manual_seed(0)
x = torch.randn(256, 10)
y = (x.sum(1, keepdim=True) > 0).float()
xv = torch.randn(64, 10)
yv = (xv.sum(1, keepdim=True) > 0).float()
model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1))
loss_fn = nn.BCEWithLogitsLoss()
lr = 2.0


def train():
    model.train()
    warmup = 0.5 if epoch == 1 else 1.0
    total = 0.0
    for i in range(0, 256, 32):
        model.zero_grad()
        loss = loss_fn(model(x[i : i + 32]), y[i : i + 32])
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= warmup * lr * p.grad
        total += loss.item()
    return total / 8


def evaluate():
    with torch.no_grad():
        return loss_fn(model(xv), yv).item()


best_val = None
try:
    for epoch in range(1, 9):
        train_loss = train()
        val_loss = evaluate()
        print(f"epoch {epoch} lr {lr:.4f} train {train_loss:.5f} val {val_loss:.5f}")
        if best_val is None or val_loss < best_val:
            with open("best.pt", "wb") as f:
                torch.save(model.state_dict(), f)
            best_val = val_loss
        else:
            lr /= 4
except KeyboardInterrupt:
    print("exiting from training early")

model.load_state_dict(torch.load("best.pt"))
print(f"test {evaluate():.5f}")
