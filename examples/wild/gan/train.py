"""GAN training: two models, two optimizers, alternating inner steps (the discriminator takes
two steps for each step of the generator).
"""
import torch
from torch import nn

torch.manual_seed(0)
real = torch.randn(256, 2) * 0.5 + torch.tensor([2.0, -1.0])
G = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
D = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()

for epoch in range(6):
    for i in range(0, 256, 32):
        batch = real[i : i + 32]
        for _ in range(2):
            fake = G(torch.randn(32, 4)).detach()
            loss_d = bce(D(batch), torch.ones(32, 1)) + bce(D(fake), torch.zeros(32, 1))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        loss_g = bce(D(G(torch.randn(32, 4))), torch.ones(32, 1))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    print(f"epoch {epoch} d {loss_d.item():.5f} g {loss_g.item():.5f}")
