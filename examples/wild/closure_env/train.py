"""A vector environment built from thunks, as RL scripts build theirs: make_env(...) returns a
closure that creates one environment; the vector env keeps those closures (to rebuild an
environment), a defaultdict with a lambda default, and a Generic base (whose empty __slots__
once made florc copy it whole). Rollouts run under no_grad into preallocated buffers; the
update reuses them. Plain pickle refuses the lambda and the closures.
"""
import collections
from typing import Generic, TypeVar

import numpy as np
import torch
from torch import nn

ObsType = TypeVar("ObsType")


class Corridor:
    def __init__(self, seed, slip):
        self.rng = np.random.default_rng(seed)
        self.slip = slip
        self.pos = 0

    def reset(self):
        self.pos = int(self.rng.integers(-2, 3))
        return self.obs()

    def obs(self):
        return np.array([self.pos / 4.0, 1.0], dtype=np.float32)

    def step(self, action):
        move = 1 if action == 1 else -1
        if self.rng.random() < self.slip:
            move = -move
        self.pos += move
        done = abs(self.pos) >= 4
        return self.obs(), (1.0 if self.pos >= 4 else 0.0), done


class VectorEnv(Generic[ObsType]):
    def __init__(self, env_fns):
        self.env_fns = env_fns
        self.envs = [fn() for fn in env_fns]
        self.episodes = collections.defaultdict(lambda: 0)
        self.returns = np.zeros(len(self.envs))

    def reset(self):
        return np.stack([e.reset() for e in self.envs])

    def step(self, actions):
        obs, rewards, dones = [], [], []
        for i, (env, a) in enumerate(zip(self.envs, actions)):
            o, r, d = env.step(int(a))
            self.returns[i] += r
            if d:
                self.episodes[i] += 1
                self.returns[i] = 0.0
                o = env.reset()
            obs.append(o)
            rewards.append(r)
            dones.append(d)
        return np.stack(obs), np.array(rewards, dtype=np.float32), np.array(dones)


def make_env(seed, slip):
    def thunk():
        return Corridor(seed, slip)

    return thunk


torch.manual_seed(1)
envs = VectorEnv([make_env(10 + i, 0.1) for i in range(3)])
agent = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
optimizer = torch.optim.Adam(agent.parameters(), lr=0.02)
num_steps = 16
obs_buf = torch.zeros(num_steps, 3, 2)
act_buf = torch.zeros(num_steps, 3, dtype=torch.long)
rew_buf = torch.zeros(num_steps, 3)
next_obs = torch.from_numpy(envs.reset())

for update in range(1, 11):
    for step in range(num_steps):
        with torch.no_grad():
            dist = torch.distributions.Categorical(logits=agent(next_obs))
            action = dist.sample()
        obs_buf[step] = next_obs
        act_buf[step] = action
        o, r, d = envs.step(action.numpy())
        rew_buf[step] = torch.from_numpy(r)
        next_obs = torch.from_numpy(o)
    returns = torch.zeros_like(rew_buf)
    running = torch.zeros(3)
    for step in reversed(range(num_steps)):
        running = rew_buf[step] + 0.9 * running
        returns[step] = running
    logp = torch.distributions.Categorical(logits=agent(obs_buf)).log_prob(act_buf)
    loss = -(logp * (returns - returns.mean())).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"update {update} loss {loss.item():.5f} episodes {sum(envs.episodes.values())}")
