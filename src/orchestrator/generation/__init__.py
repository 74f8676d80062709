"""Generation: task → examples → requests → backend → scored per-example records.

- `task`: the one task schema (`Task`, used by inference tasks and every suite task), `Sampling`,
  the one jinja environment.
- `tasks/`: named inference tasks (YAML) and `load_task`.
- `examples`: rows (`datasets.load_dataset`) → `{id, prompt, gold, domain, row}`.
- `pipeline`: the one resumable generate → score → write loop (`pipeline.run`) and the
  per-example record (docs/results-schema.md).
- `backends/`: `base.Request` → `base.Generation` (transformers, vLLM); `models`: model configs
  and GPU estimates; `hardware`: NVML readings; `tiny`: a tiny local model for tests and demos.
"""
