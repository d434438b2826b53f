"""Reinforcement learning, REINFORCE on a toy environment: `for i_episode in itertools.count(1)`
stopping on a data-dependent condition; an environment object with its own numpy random
generator; policy state in Python lists of tensors, cleared after every episode.
"""
import itertools

import numpy as np
import torch
from torch import nn


class Corridor:
    """Walk left or right; reward at the right end. Its own numpy generator adds slips."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def reset(self):
        self.pos = 0
        return self.state()

    def state(self):
        return torch.tensor([self.pos / 5.0, 1.0])

    def step(self, action):
        move = 1 if action == 1 else -1
        if self.rng.random() < 0.1:
            move = -move
        self.pos = max(-5, min(5, self.pos + move))
        done = abs(self.pos) == 5
        return self.state(), (1.0 if self.pos == 5 else 0.0), done


torch.manual_seed(0)
env = Corridor(seed=0)
policy = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
optimizer = torch.optim.Adam(policy.parameters(), lr=0.05)
saved_log_probs = []
rewards = []
running_reward = 0.0

for i_episode in itertools.count(1):
    state = env.reset()
    for t in range(40):
        probs = torch.softmax(policy(state), dim=0)
        dist = torch.distributions.Categorical(probs)
        action = dist.sample()
        saved_log_probs.append(dist.log_prob(action))
        state, reward, done = env.step(action.item())
        rewards.append(reward)
        if done:
            break
    ret = sum(rewards)
    running_reward = 0.9 * running_reward + 0.1 * ret
    loss = -torch.stack(saved_log_probs).sum() * (ret - 0.5)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    del saved_log_probs[:]
    del rewards[:]
    print(f"episode {i_episode} steps {t + 1} running {running_reward:.4f}")
    if running_reward > 0.6 or i_episode >= 25:
        break
