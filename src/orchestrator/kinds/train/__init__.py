"""Training-side building blocks for the PPO multi-task trainer (gradient surgery, early stopping)."""
