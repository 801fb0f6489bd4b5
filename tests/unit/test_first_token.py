"""The last layer run for the first token only gives the same logits, or is not used."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    CamembertConfig,
    DistilBertConfig,
    ElectraConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from crossrank.backends.first_token import FirstTokenLastLayer, use_first_token_last_layer

SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


def _tiny(config_class: type, **extra) -> torch.nn.Module:
    torch.manual_seed(7)
    config = config_class(vocab_size=120, max_position_embeddings=80, num_labels=1, **SIZES, **extra)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="eager").eval()


def _batch(model: torch.nn.Module, *, with_types: bool) -> dict[str, torch.Tensor]:
    """Different data from the check inside use_first_token_last_layer: longer, other padding."""
    generator = torch.Generator().manual_seed(42)
    input_ids = torch.randint(5, 120, (4, 40), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for row, used in enumerate((40, 33, 12, 3)):
        attention_mask[row, used:] = 0
        input_ids[row, used:] = model.config.pad_token_id or 0
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if with_types:
        batch["token_type_ids"] = (torch.arange(40) >= 10).long().expand(4, 40) * attention_mask
    return batch


@pytest.mark.parametrize(
    ("config_class", "with_types"),
    [
        (BertConfig, True),
        (RobertaConfig, False),
        (XLMRobertaConfig, False),
        (CamembertConfig, False),
        (ElectraConfig, True),
    ],
)
def test_same_logits_with_the_first_token_layer(config_class: type, with_types: bool) -> None:
    model = _tiny(config_class, **({"embedding_size": 16} if config_class is ElectraConfig else {}))
    batch = _batch(model, with_types=with_types)
    with torch.inference_mode():
        expected = model(**batch).logits
    assert use_first_token_last_layer(model)
    assert isinstance(model.base_model.encoder.layer[-1], FirstTokenLastLayer)
    with torch.inference_mode():
        assert torch.allclose(model(**batch).logits, expected, atol=1e-5)


def test_other_families_are_left_alone() -> None:
    model = _tiny(DistilBertConfig, dim=32, n_layers=2, n_heads=4, hidden_dim=64)
    layers = list(model.modules())
    assert not use_first_token_last_layer(model)
    assert list(model.modules()) == layers


def test_a_failed_check_keeps_the_full_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny(BertConfig)
    original = model.bert.encoder.layer[-1]
    real_forward = FirstTokenLastLayer.forward
    monkeypatch.setattr(FirstTokenLastLayer, "forward", lambda self, *a, **k: real_forward(self, *a, **k) + 1)
    assert not use_first_token_last_layer(model)
    assert model.bert.encoder.layer[-1] is original


def test_an_unexpected_layer_layout_keeps_the_full_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny(BertConfig)
    original = model.bert.encoder.layer[-1]

    def renamed_attribute(self, *args, **kwargs):  # e.g. a future transformers renames `scaling`
        raise AttributeError("'BertSelfAttention' object has no attribute 'scaling'")

    monkeypatch.setattr(FirstTokenLastLayer, "forward", renamed_attribute)
    with torch.inference_mode():
        expected = model(**_batch(model, with_types=True)).logits
    assert not use_first_token_last_layer(model)
    assert model.bert.encoder.layer[-1] is original
    with torch.inference_mode():
        assert torch.equal(model(**_batch(model, with_types=True)).logits, expected)


def test_torch_backend_uses_it_and_scores_like_sentence_transformers(tiny_model_dir) -> None:
    from sentence_transformers import CrossEncoder

    from crossrank import Reranker

    reranker = Reranker(tiny_model_dir, backend="torch", device="cpu", precision="fp32")
    assert isinstance(reranker.engine.cross_encoder.model.bert.encoder.layer[-1], FirstTokenLastLayer)
    query, docs = "how long does a flea live", ["fleas live a year", "", "the eiffel tower " * 30, "tea"]
    reference = CrossEncoder(str(tiny_model_dir), device="cpu", activation_fn=torch.nn.Identity())
    expected = reference.predict([(query, doc) for doc in docs])
    assert max(abs(a - b) for a, b in zip(reranker.score(query, docs), expected, strict=True)) <= 1e-5
