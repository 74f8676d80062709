"""The `eval` kind: checkpoints of a training experiment on a suite of tasks."""

from orchestrator.core.kinds import PluginKind

KIND = PluginKind("eval", "orchestrator.kinds.eval.spec:EvalSpec", report="orchestrator.kinds.eval.report")
