"""The `train` kind: the PPO multi-task trainer (gradient surgery, early stopping, evaluate as you train)."""

from orchestrator.core.kinds import PluginKind

KIND = PluginKind("train", "orchestrator.kinds.train.spec:TrainSpec", report="orchestrator.kinds.train.report")
