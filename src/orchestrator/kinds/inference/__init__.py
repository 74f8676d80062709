"""The `inference` and `sweep` kinds: models × tasks through the generation pipeline."""

from orchestrator.core.kinds import PluginKind

INFERENCE = PluginKind(
    "inference", "orchestrator.kinds.inference.spec:InferenceSpec", report="orchestrator.kinds.inference.report"
)
# A sweep's runs are inference runs: the inference kind reads and reports them (once).
SWEEP = PluginKind("sweep", "orchestrator.kinds.inference.spec:SweepSpec")
