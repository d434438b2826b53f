"""Wall-clock figures in the script's own prints: seconds per epoch, ms per batch, steps per
second from `time.time()`, a timer object keeping its start in an attribute. A replay computes
other times than the recording did; the loss printed on the same line must still match.
"""
import time
from time import perf_counter

import torch
from torch import nn


class Timer:
    def start(self):
        self.t0 = perf_counter()

    def ms(self):
        return (perf_counter() - self.t0) * 1000


torch.manual_seed(0)
data = torch.randn(96, 6)
target = data @ torch.linspace(-1, 1, 6).unsqueeze(1) + 0.1 * torch.randn(96, 1)
model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
timer = Timer()
start_time = time.time()
global_step = 0

for epoch in range(6):
    t0 = time.time()
    perm = torch.randperm(96)
    for step in range(0, 96, 16):
        timer.start()
        idx = perm[step : step + 16]
        loss = nn.functional.mse_loss(model(data[idx]), target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        global_step += 1
        if step % 32 == 0:
            sps = int(global_step / (time.time() - start_time))
            print("step %d loss %.5f %.3f ms/batch" % (global_step, loss.item(), timer.ms()))
            print("SPS:", sps, "step", global_step)
    dt = time.time() - t0
    print(f"epoch {epoch} loss {loss.item():.4f} time {dt:.3f}s")

print(f"done in {time.time() - start_time:.2f}s; final loss {loss.item():.6f}")
