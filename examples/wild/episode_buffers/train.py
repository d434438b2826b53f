"""Actor-critic with per-episode buffers kept on the policy module: `self.saved_actions` (a list
of SavedAction namedtuples holding tensors with a live autograd graph) and `self.rewards`,
filled by select_action() and the episode loop, consumed and cleared (`del self.rewards[:]`) by
finish_episode(). A small pure-Python environment with a numpy generator; `itertools.count`.
"""
import itertools
from collections import namedtuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical

SavedAction = namedtuple("SavedAction", ["log_prob", "value"])
GAMMA = 0.9


class Pendulum:
    """Keep a marker near the middle of a track; actions push it left or right."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.x = 0.0
        self.t = 0

    def reset(self):
        self.x = float(self.rng.uniform(-1.0, 1.0))
        self.t = 0
        return np.array([self.x, 0.0], dtype=np.float32)

    def step(self, action):
        self.x += (0.3 if action == 1 else -0.3) + float(self.rng.normal(0.0, 0.05))
        self.t += 1
        reward = 1.0 - min(abs(self.x), 1.0)
        done = abs(self.x) > 2.0 or self.t >= 30
        return np.array([self.x, self.t / 30.0], dtype=np.float32), reward, done


class ActorCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(2, 16)
        self.actor = nn.Linear(16, 2)
        self.critic = nn.Linear(16, 1)
        self.saved_actions = []
        self.rewards = []

    def forward(self, x):
        h = F.relu(self.body(x))
        return F.softmax(self.actor(h), dim=-1), self.critic(h)


env = Pendulum(seed=3)
torch.manual_seed(3)
model = ActorCritic()
optimizer = torch.optim.Adam(model.parameters(), lr=0.03)


def select_action(state):
    probs, value = model(torch.from_numpy(state))
    m = Categorical(probs)
    action = m.sample()
    model.saved_actions.append(SavedAction(m.log_prob(action), value))
    return action.item()


def finish_episode():
    R, returns = 0.0, []
    for r in model.rewards[::-1]:
        R = r + GAMMA * R
        returns.insert(0, R)
    returns = torch.tensor(returns)
    returns = (returns - returns.mean()) / (returns.std() + 1e-6)
    policy_losses, value_losses = [], []
    for (log_prob, value), ret in zip(model.saved_actions, returns):
        advantage = ret - value.item()
        policy_losses.append(-log_prob * advantage)
        value_losses.append(F.smooth_l1_loss(value, torch.tensor([ret])))
    optimizer.zero_grad()
    loss = torch.stack(policy_losses).sum() + torch.stack(value_losses).sum()
    loss.backward()
    optimizer.step()
    del model.rewards[:]
    del model.saved_actions[:]
    return loss.item()


def main():
    running = 0.0
    for i_episode in itertools.count(1):
        state = env.reset()
        ep_reward = 0.0
        for t in range(1, 100):
            action = select_action(state)
            state, reward, done = env.step(action)
            model.rewards.append(reward)
            ep_reward += reward
            if done:
                break
        running = 0.1 * ep_reward + 0.9 * running
        loss = finish_episode()
        print(f"episode {i_episode} steps {t} reward {ep_reward:.4f} loss {loss:.4f}")
        if i_episode >= 12:
            break


if __name__ == "__main__":
    main()
