"""Where an edit's patches must stay silent once its answer is written: the answer's end and what follows it."""

from __future__ import annotations

import torch
from peft import PeftModel

from ...batching import TargetBatch
from ...shared_prefix import SharedPrefix
from ...tuners.mpn import MPNLayer


def after_answer_inputs(
    model: PeftModel,
    layer: MPNLayer,
    batch: TargetBatch,
    h: torch.Tensor,
    rows: torch.Tensor,
    steps: int,
    pad: int,
    continued: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """The FFN inputs at `layer` from the last token of each answer in `rows` on, as `model` (without the new
    patches) continues it greedily: `steps` positions per row (None when `steps` is 0). `continued`: those
    continuations' inputs for every row of `batch`, already computed (`PrefixCache.continued`).

    A patch that still fires there makes `generate()` repeat the new answer or drift after it, which teacher
    forcing on the answer tokens cannot see.
    """
    if not steps:
        return None
    after = [h[rows, -1]]  # left-padded: every row's answer ends at the last position
    if steps > 1 and continued is not None and continued.shape[1] >= steps - 1:
        after += [continued[rows, i].float() for i in range(steps - 1)]
    elif steps > 1:
        shared = SharedPrefix([batch.encodings[r].input_ids for r in rows.tolist()], pad)
        inputs = shared.inputs(model, full_ids=True, new_tokens=steps)  # a prompt format's questions run once
        with torch.no_grad(), layer.record_inputs() as recorded:
            model.generate(
                **inputs,
                max_new_tokens=steps,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
            )
        after += [step[:, -1].float() for step in recorded[1:]]  # each generated token, fed back in
    return torch.cat(after)
