"""`bert`: a BERT-style transformer encoder classifier (the ANN of the SST-2 comparison).

Built from a `transformers` BertConfig of the given size, or with `pretrained` (a local
`save_pretrained` folder or a hub id, through `BertModel.from_pretrained`, remote code off) from
that checkpoint's weights and shape; its vocabulary must then be the dataset tokenizer's (give the
checkpoint's tokenizer.json to the dataset). Pooling and head are the other text classifiers'
(`TokenClassifier`), so the comparison differs in the encoder only. The bundle records `pretrained`,
which is read again when the bundle is loaded (its weights are then replaced by the bundle's).
There is no SNN twin: softmax attention has no spiking form here; `spikeformer` is the spiking one.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from snnctl.errors import UserError
from snnctl.nn.layers import ActivationFactory
from snnctl.zoo.sequence import TokenClassifier, spiking


def bert_encoder(vocab_size: int, length: int, d_model: int, n_layers: int, heads: int, ff: int,
                 dropout: float, pretrained: str | None) -> Any:
    from transformers import AutoConfig, BertConfig, BertModel

    if pretrained:
        try:
            kind = AutoConfig.from_pretrained(pretrained, trust_remote_code=False).model_type
            if kind != "bert":
                raise UserError(f"'{pretrained}' is a {kind} checkpoint, not BERT",
                                where="[model.config] pretrained", hint="give a BERT checkpoint")
            model = BertModel.from_pretrained(pretrained, add_pooling_layer=False, trust_remote_code=False)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load BERT checkpoint '{pretrained}': {str(err).splitlines()[0]}",
                            where="[model.config] pretrained",
                            hint="give a save_pretrained folder (config.json + weights) or a hub id") from None
        if model.config.vocab_size != vocab_size:
            raise UserError(f"the checkpoint has {model.config.vocab_size} token ids but the dataset's "
                            f"tokenizer has {vocab_size}", where="[model.config] pretrained",
                            hint="give the dataset the checkpoint's tokenizer.json ([data.options] tokenizer)")
        return model
    if heads < 1 or d_model % heads:
        raise UserError(f"d_model {d_model} does not split into {heads} attention heads",
                        where="[model.config] heads", hint="choose heads that divide d_model")
    config = BertConfig(vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers,
                        num_attention_heads=heads, intermediate_size=ff, max_position_embeddings=length,
                        type_vocab_size=1, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                        pad_token_id=0)
    return BertModel(config, add_pooling_layer=False)


class BertClassifier(TokenClassifier):
    def __init__(self, encoder: Any, num_classes: int, dropout: float) -> None:
        cfg = encoder.config
        super().__init__(cfg.max_position_embeddings, cfg.hidden_size, num_classes, dropout)
        self.bert = encoder

    def encode(self, ids: Tensor, keep: Tensor) -> Tensor:
        hidden = self.bert(input_ids=ids, attention_mask=keep.long()).last_hidden_state
        cfg = self.bert.config
        n = keep.sum(1).double()
        # per layer: Q K^T and softmax(.) V over the real tokens of each sentence, the softmax's
        # exponentials, and the feed-forward activations (the nn.Linear layers are counted by the meter)
        pairs, tokens = float((n * n).sum()), float(n.sum())
        self.count(macs=cfg.num_hidden_layers * (2 * pairs * cfg.hidden_size + pairs * cfg.num_attention_heads),
                   neuron_steps=cfg.num_hidden_layers * tokens * cfg.intermediate_size)
        return hidden


def build(act: ActivationFactory, vocab_size: int = 16384, length: int = 64, d_model: int = 128, n_layers: int = 2,
          heads: int = 2, ff: int = 512, num_classes: int = 2, dropout: float = 0.1,
          pretrained: str | None = None) -> nn.Module:
    if spiking(act):
        raise UserError("model 'bert' has no SNN twin (softmax attention)",
                        hint="use kind = \"ann\", or the spiking encoder 'spikeformer'")
    encoder = bert_encoder(vocab_size, length, d_model, n_layers, heads, ff, dropout, pretrained)
    return BertClassifier(encoder, num_classes, dropout)
