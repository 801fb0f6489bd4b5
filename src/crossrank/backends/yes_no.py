"""An LLM reranker as a one-logit scorer: ``logit("yes") - logit("no")`` at the last token, with the
output layer folded into one row (torch; used by the torch backend and the ONNX export).

A causal LM's head projects the last hidden state onto the whole vocabulary (151,936 rows for Qwen)
and the score reads two of them. Since ``logit(yes) - logit(no) = h . (W_yes - W_no) + (b_yes -
b_no)``, :class:`YesNoScore` keeps that one difference row (in fp32) and never computes the
vocabulary projection: the same number up to float rounding, for a hidden-size dot product.

Batches are padded on the right (crossrank's encoder does), so each row's score is read at its own
last real token; a causal model's tokens never see the padding after them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["YesNoScore"]


class YesNoScore(nn.Module):
    """``causal_lm``'s body and the folded ``true_id - false_id`` row of its output layer.

    Called with ``{"input_ids": ..., "attention_mask": ...}`` (right-padded), it returns
    ``{"scores": (rows, 1)}``: the calling convention of a sentence-transformers ``CrossEncoder``,
    so the torch backend runs either the same way; :meth:`score` takes the two tensors (the ONNX
    export traces it).
    """

    def __init__(self, causal_lm: Any, true_id: int, false_id: int) -> None:
        super().__init__()
        self.body = causal_lm.get_decoder()
        head = causal_lm.get_output_embeddings()
        weight = head.weight.detach()
        self.register_buffer("direction", (weight[true_id].float() - weight[false_id].float()).clone())
        bias = getattr(head, "bias", None)
        offset = 0.0 if bias is None else float(bias[true_id].float() - bias[false_id].float())
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32))
        self.config = causal_lm.config

    @property
    def device(self) -> torch.device:
        return self.direction.device

    def score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(rows, 1)`` float32 scores of right-padded ``input_ids``."""
        # No key/value cache: one forward pass, nothing is generated after it.
        hidden = self.body(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        last = (attention_mask.sum(dim=1) - 1).view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
        state = hidden.gather(1, last).squeeze(1).float()
        # A product and a sum, not a MatMul: int8 quantisation (which takes MatMuls) leaves the
        # folded row in fp32, and a one-column MatMul has no per-channel form anyway.
        return (state * self.direction).sum(dim=1, keepdim=True) + self.offset

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"scores": self.score(features["input_ids"], features["attention_mask"])}
