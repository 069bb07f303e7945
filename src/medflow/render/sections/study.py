"""The line under a study's heading: target, pretraining source, model, modes, seeds."""

from __future__ import annotations

from medflow.config.types import StudyConfig
from medflow.render.blocks import Block, code, joined, p
from medflow.render.context import ReportContext

# The model keys worth showing per architecture (others: a torchvision backbone).
ARCH_KEYS = {
    "perceptron": (),
    "mlp": ("hidden_sizes", "dropout"),
    "cnn": ("width", "depth", "dropout"),
}


def build(ctx: ReportContext, study: StudyConfig) -> list[Block]:
    pre = study.pretrain
    arch = study.model.get("arch")
    keys = ARCH_KEYS.get(arch, ("weights", "dropout"))
    model = joined([str(arch), *(f"{k}={study.model[k]}" for k in keys if k in study.model)])
    source = ["pretrained on ", code(pre.dataset)] if pre else ["no pretraining"]
    return [
        p(
            "Target ",
            code(study.target),
            ", ",
            *source,
            f"; model {model}; modes {joined(study.modes)}; seeds {joined(study.seeds)}; monitor ",
            code(study.train["monitor"]),
            ".",
        )
    ]
