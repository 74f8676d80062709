"""The multi-task methods a train spec may name (`mtl.method`): torchjd weightings computed from the
Gramian of the task gradients (kinds/train/aggregation.py runs them). Plain data, no torch: specs
are validated by control commands, which never import it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    torchjd: str  # the class in torchjd.aggregation
    defaults: dict[str, Any]
    about: str
    gramian: bool = True  # False: a Matrix weighting that only sees the Gramian through its square root


# `mtl.method` -> torchjd weighting. Scale as torchjd defines it: PCGrad and GradVac sum the
# (projected) task gradients like the baseline's summed loss; the others are mean-like (sum w ~ 1).
METHODS: dict[str, Method] = {
    "pcgrad": Method("PCGradWeighting", {}, "project each gradient off those it conflicts with (Yu et al. 2020)"),
    "upgrad": Method("UPGradWeighting", {}, "project onto the dual cone of the task gradients (Quinton & Rey 2024)"),
    "mgda": Method("MGDAWeighting", {}, "minimum-norm point of the convex hull (Desideri 2012; Sener & Koltun 2018)"),
    "cagrad": Method(
        "CAGradWeighting", {"c": 0.5}, "conflict-averse: best worst-case improvement near the mean (Liu et al. 2021)"
    ),
    "nash_mtl": Method(
        "NashMTL", {}, "Nash bargaining solution over the task gradients (Navon et al. 2022)", gramian=False
    ),
    "imtl_g": Method("IMTLGWeighting", {}, "equal projections of the update on every task gradient (Liu et al. 2021)"),
    "aligned_mtl": Method(
        "AlignedMTLWeighting", {}, "align the principal components of the gradients (Senushkin et al. 2023)"
    ),
    "dualproj": Method("DualProjWeighting", {}, "project the mean onto the dual cone (Quinton & Rey 2024)"),
    "fairgrad": Method("FairGradWeighting", {"alpha": 1.0}, "alpha-fair utility maximisation (Ban & Ji 2024)"),
    "gradvac": Method("GradVacWeighting", {}, "vaccinate towards a target cosine similarity (Wang et al. 2021)"),
    "mean": Method("MeanWeighting", {}, "the mean of the task gradients", gramian=False),
    "random": Method(
        "RandomWeighting", {}, "random loss weighting, softmax of normal draws (Lin et al. 2021)", gramian=False
    ),
}

REFUSED: dict[str, str] = {
    "graddrop": "GradDrop keeps or drops each coordinate by the sign agreement of the task gradients: it needs "
    "every coordinate of every task gradient, which no rank holds under FSDP",
    "config": "ConFIG solves with the normalised task gradients themselves (a pseudo-inverse of J), not their "
    "inner products: it needs the full gradients, which no rank holds under FSDP",
    "trimmed_mean": "TrimmedMean sorts each coordinate across tasks: it needs the full gradients",
}


def method_names() -> list[str]:
    return list(METHODS)


def check_method(name: str) -> None:
    """A ValueError naming the available methods (the spec turns it into exit 2 at submit)."""
    if name in REFUSED:
        raise ValueError(f"{name!r} is not offered: {REFUSED[name]}; use one of: {', '.join(METHODS)}")
    if name not in METHODS:
        raise ValueError(f"{name!r} is not a multi-task method; use one of: {', '.join(METHODS)}")
