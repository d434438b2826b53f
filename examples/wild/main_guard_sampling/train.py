"""Everything under `if __name__ == "__main__":`; an endless batch iterator wrapper holding a
DataLoader iterator (not picklable); sampling from the model inside the training loop (it
consumes the random generator); a TensorBoard SummaryWriter writing event files.
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter


class Forever:
    """Yields batches without end, restarting the DataLoader when it runs out."""

    def __init__(self, loader):
        self.loader = loader
        self.it = iter(loader)

    def next(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)


def main():
    torch.manual_seed(0)
    x = torch.randn(96, 6)
    y = x @ torch.randn(6, 3)
    batches = Forever(DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True))
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    writer = SummaryWriter("runs")
    for epoch in range(6):
        for step in range(4):
            xb, yb = batches.next()
            loss = nn.functional.mse_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            writer.add_scalar("loss", loss.item(), epoch * 4 + step)
        with torch.no_grad():  # sample: a random input through the model
            sample = model(torch.randn(1, 6))
        print(f"epoch {epoch} loss {loss.item():.5f} sample {sample[0, 0].item():.5f}")
    writer.close()


if __name__ == "__main__":
    main()
