"""Scoring: from a generation (or a predictions file) to numbers.

- `registry`: the one scorer registry (`get_scorer`, `SCORERS`): a name means the same scoring
  for inference tasks, evaluation suites, training rewards and `orchestrate score`.
- `scorers`: answer extraction and the answer-based scorers; `code_scorers`: code run against the
  record's tests in the `sandbox` (`sandbox_supervisor` holds its isolation); `weighted`: the
  corpus-level harness scorer.
- `rewards`: a training reward is a scorer's value.
- `metrics`: EM/F1, AUROC/ECE and each metric's direction; `offline`: `orchestrate score`.
"""
