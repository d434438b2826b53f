"""A PyTorch Lightning script: the training loop is Lightning's (`trainer.fit`). florc records
it unchanged, taking Lightning's epochs as its main loop; the hindsight edits add statements to
`training_step`, `validation_step` and `on_train_epoch_end`.
"""
import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
torch.set_num_threads(1)
x = torch.randn(192, 8)
y = x @ torch.randn(8, 1) + 0.1 * torch.randn(192, 1)
train = TensorDataset(x[:160], y[:160])
val = TensorDataset(x[160:], y[160:])


class Regressor(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))
        self.loss_fn = nn.MSELoss()
        self.totals: list[float] = []

    def training_step(self, batch, batch_idx):
        xb, yb = batch
        loss = self.loss_fn(self.net(xb), yb)
        self.totals.append(loss.item())
        return loss

    def validation_step(self, batch, batch_idx):
        xb, yb = batch
        loss = self.loss_fn(self.net(xb), yb)
        self.log("val_loss", loss)
        return loss

    def on_train_epoch_end(self):
        mean = sum(self.totals) / len(self.totals)
        self.totals.clear()
        print(f"epoch {self.current_epoch} loss {mean:.6f}")

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return [optimizer], [scheduler]


model = Regressor()
trainer = L.Trainer(
    max_epochs=6,
    accelerator="cpu",
    devices=1,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
trainer.fit(
    model,
    DataLoader(train, batch_size=32, shuffle=True),
    DataLoader(val, batch_size=16),
)
print(f"trained {trainer.current_epoch} epochs")
