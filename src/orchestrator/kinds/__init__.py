"""Job kinds. Each module holds one kind's spec model; `spec.KINDS` registers them lazily."""
