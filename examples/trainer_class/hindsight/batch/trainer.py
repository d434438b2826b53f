"""A minimal Trainer class: fit() owns the epoch loop and the batch loop and
calls every callback as cb(trainer, epoch) at the end of each epoch."""
import torch


class Trainer:
    def __init__(self, model, optimizer, loss_fn, loader, callbacks=None):
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.loader = loader
        self.callbacks = list(callbacks or [])
        self.epoch_loss = None

    def train_step(self, xb, yb):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(xb), yb)
        loss.backward()
        self.optimizer.step()
        return loss

    def fit(self, epochs):
        self.model.train()
        for epoch in range(epochs):
            total = 0.0
            count = 0
            for step, (xb, yb) in enumerate(self.loader):
                loss = self.train_step(xb, yb)
                print(f"HINDSIGHT batch e={epoch} step={step} loss={loss.item():.6f}")
                total += loss.item() * xb.size(0)
                count += xb.size(0)
            self.epoch_loss = total / count
            print(f"epoch {epoch} loss {self.epoch_loss:.6f}")
            for cb in self.callbacks:
                cb(self, epoch)
        return self

    @torch.no_grad()
    def evaluate(self, x, y):
        self.model.eval()
        out = self.model(x)
        return (out.argmax(dim=1) == y).float().mean().item()
