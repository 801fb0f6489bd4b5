"""Run a cross-encoder's last layer for the first token only.

A cross-encoder's score reads one vector: the last layer's output at the first token (``[CLS]``
for BERT, ``<s>`` for RoBERTa and ELECTRA). The other tokens' outputs of that layer are computed
and thrown away. They are still needed as keys and values of the last attention, but not as
queries, nor through the attention output projection and the feed-forward block, which are most
of a layer's work. :class:`FirstTokenLastLayer` computes just what the score needs:

* keys and values from every token, the query from the first token only;
* attention output, residual, LayerNorm and feed-forward for that one token.

The result is the same function (it differs from the full layer by float rounding only), and on
MiniLM-L6 the forward pass does about 14% less work (1/6 of the layers, 83% of that layer). With
fewer layers the share is larger (TinyBERT-L2: ~40%).

Both backends use it: the torch backend on the model it loads, the ONNX export before tracing.
:func:`use_first_token_last_layer` swaps the layer in only for model families whose layers and
heads are known to fit, and only after checking on a padded batch that the logits are unchanged;
otherwise the model is left as is.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

__all__ = ["FIRST_TOKEN_MODEL_TYPES", "FirstTokenLastLayer", "use_first_token_last_layer"]

logger = logging.getLogger(__name__)

#: ``config.model_type`` values whose encoder layers have the BERT layout (``attention.self.query``,
#: ``attention.output``, ``intermediate``, ``output``) and whose classification head reads only
#: the first token of the last hidden state (BERT's pooler, RoBERTa's and ELECTRA's heads).
#: ModernBERT and DeBERTa-v2 are not in it: ModernBERT's layers have another layout (pre-norm,
#: fused ``Wqkv``, rotary positions, alternating local/global masks, under ``model.layers``) and
#: its usual ``classifier_pooling="mean"`` head reads every token of the last layer, while
#: DeBERTa-v2's disentangled attention adds relative-position terms (c2p, p2c) that
#: :class:`FirstTokenLastLayer` does not compute.
FIRST_TOKEN_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})

#: Largest logit difference accepted between the model with and without the swapped layer.
_TOLERANCE = 1e-4


class FirstTokenLastLayer(nn.Module):
    """Stands in for a BERT-style encoder's last layer; returns the first token's output only.

    Its output has shape ``(batch, 1, hidden)``; the classification heads it is used with read
    ``hidden_states[:, 0]``, so they see the very vector the full layer would have given them.

    Args:
        layer: The encoder's original last layer; its weights are used as they are.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Same arguments as the layer it replaces (the extra ones only matter to decoders)."""
        attention = self.layer.attention.self
        batch = hidden_states.shape[0]
        heads, head_size = attention.num_attention_heads, attention.attention_head_size
        first = hidden_states[:, :1]
        query = attention.query(first).view(batch, 1, heads, head_size).transpose(1, 2)
        key = attention.key(hidden_states).view(batch, -1, heads, head_size).transpose(1, 2)
        value = attention.value(hidden_states).view(batch, -1, heads, head_size).transpose(1, 2)
        scores = torch.matmul(query, key.transpose(2, 3)) * attention.scaling
        if attention_mask is not None:
            # The mask the encoder built for every layer (additive for eager attention, boolean
            # "may attend" for SDPA): keep the first query's row.
            mask = attention_mask[..., :1, :]
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            else:
                scores = scores + mask
        context = torch.matmul(torch.softmax(scores, dim=-1), value)
        context = context.transpose(1, 2).reshape(batch, 1, heads * head_size)
        attended = self.layer.attention.output(context, first)
        return self.layer.output(self.layer.intermediate(attended), attended)


def use_first_token_last_layer(model: nn.Module) -> bool:
    """Swap ``model``'s last encoder layer for :class:`FirstTokenLastLayer`, if that is safe.

    ``model`` is a Hugging Face ``*ForSequenceClassification`` in eval mode. The swap is made
    only for :data:`FIRST_TOKEN_MODEL_TYPES`, and kept only if the logits of a padded batch of
    random pairs stay within 1e-4 of the original's. Otherwise the model is left unchanged.

    Returns:
        Whether the layer was swapped.
    """
    config = getattr(model, "config", None)
    encoder = getattr(getattr(model, "base_model", None), "encoder", None)
    layers = getattr(encoder, "layer", None)
    known_family = getattr(config, "model_type", None) in FIRST_TOKEN_MODEL_TYPES
    if not known_family or not isinstance(layers, nn.ModuleList):
        return False
    device = next(model.parameters()).device
    example = {name: value.to(device) for name, value in _padded_example(config).items()}
    original = layers[-1]
    try:
        with torch.inference_mode():
            expected = model(**example).logits
            layers[-1] = FirstTokenLastLayer(original)
            difference = float((model(**example).logits - expected).abs().max())
    except Exception as err:  # an unexpected layout or input: keep the model as it was
        difference, reason = float("inf"), f"{type(err).__name__}: {err}"
    else:
        reason = f"logits moved by {difference:.2e}"
    if difference <= _TOLERANCE:
        return True
    layers[-1] = original
    logger.info("Keeping the full last layer of this %s model (%s).", config.model_type, reason)
    return False


def _padded_example(config: Any) -> dict[str, torch.Tensor]:
    """Three random pairs of different lengths, padded: checks the mask handling too."""
    generator = torch.Generator().manual_seed(0)
    length = 24
    low = min(10, config.vocab_size - 1)  # past the special tokens of the usual vocabularies
    input_ids = torch.randint(low, config.vocab_size, (3, length), generator=generator)
    attention_mask = torch.ones(3, length, dtype=torch.long)
    for row, used in enumerate((length, 17, 9)):
        attention_mask[row, used:] = 0
        input_ids[row, used:] = config.pad_token_id if config.pad_token_id is not None else 0
    example = {"input_ids": input_ids, "attention_mask": attention_mask}
    if getattr(config, "type_vocab_size", 0) > 1:
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[:, length // 3 :] = 1
        example["token_type_ids"] = token_type_ids * attention_mask
    return example
