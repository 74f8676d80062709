"""orchestrator: LLM experiments on SLURM, from YAML specs to markdown reports."""

__version__ = "0.1.0"
