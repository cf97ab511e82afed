"""Learning (model §6): rollouts on the batched environment and Stackelberg PPO."""
