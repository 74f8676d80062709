"""A deterministic scorer for tests: the random tiny model is never right, so calibration tests
take correctness from the gold label (both classes present, confidences from the model)."""


def gold_label(prediction, gold):
    return {"accuracy": float(bool(gold))}
