"""A sequence model that predicts past its input: `forward` rebinds `output` in two loops and
collects every step in a list, then each epoch predicts under no_grad (the sine-wave shape)."""

import math

import torch
import torch.nn as nn

torch.manual_seed(0)
HIDDEN = 96


class Sequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(1, HIDDEN)
        self.linear = nn.Linear(HIDDEN, 1)

    def forward(self, input, future=0):
        outputs = []
        h = torch.zeros(input.size(0), HIDDEN)
        c = torch.zeros(input.size(0), HIDDEN)
        for input_t in input.split(1, dim=1):
            h, c = self.cell(input_t, (h, c))
            output = self.linear(h)
            outputs += [output]
        for i in range(future):
            h, c = self.cell(output, (h, c))
            output = self.linear(h)
            outputs += [output]
        return torch.cat(outputs, dim=1)


steps = torch.arange(0, 24, dtype=torch.float32)
waves = torch.stack([torch.sin(steps / 4.0 + k * math.pi / 16) for k in range(40)])
train_x, train_y = waves[8:, :-1], waves[8:, 1:]
test_x = waves[:8, :-1]

model = Sequence()
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
criterion = nn.MSELoss()

for epoch in range(6):
    total = 0.0
    for start in range(0, train_x.size(0), 8):
        optimizer.zero_grad()
        out = model(train_x[start : start + 8])
        loss = criterion(out, train_y[start : start + 8])
        loss.backward()
        optimizer.step()
        total += loss.item()
    with torch.no_grad():
        pred = model(test_x, future=80)
    print(f"epoch {epoch} loss {total:.6f} predicted {pred.size(1)} steps")
