"""A Trainer class of a local package: the training loop lives here, not in the script."""
import torch


class Trainer:
    def __init__(self, model, optimizer, data, callbacks=()):
        self.model = model
        self.optimizer = optimizer
        self.data = data
        self.callbacks = list(callbacks)
        self.global_step = 0

    def fit(self, epochs):
        for epoch in range(epochs):
            total = 0.0
            for xb, yb in self.data:
                loss = torch.nn.functional.cross_entropy(self.model(xb), yb)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.global_step += 1
                for callback in self.callbacks:
                    callback(self, loss)
                total += loss.item()
            print(f"epoch {epoch} loss {total / len(self.data):.5f}")
