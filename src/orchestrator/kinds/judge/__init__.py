"""The `judge` kind: an LLM (or rule) judge's verdicts on predictions, with confidence tags."""

from orchestrator.core.kinds import PluginKind

KIND = PluginKind("judge", "orchestrator.kinds.judge.spec:JudgeSpec", report="orchestrator.kinds.judge.report")
