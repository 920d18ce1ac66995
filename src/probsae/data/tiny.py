"""Tiny random-weight models and a tiny tokenizer, for tests and smoke runs (nothing downloaded)."""

from __future__ import annotations

from typing import Any

import torch

from probsae.data.models import ModelHandle, minilm_path

#: Words of the tiny word-level tokenizer (plus ``<unk>`` and ``<|endoftext|>``).
TINY_WORDS: tuple[str, ...] = tuple(
    "the a an of to in and or is are was be it this that for on with as by at from not but if "
    "then else def class return import module function value list dict set string number true "
    "false none self object type error file line data model token layer python code test".split())

FAMILIES = ("gpt2", "qwen3", "bert")

#: A few short documents in the tiny tokenizer's vocabulary (no ``<unk>``), for tests.
TINY_DOCS: tuple[str, ...] = (
    "the model is a test of the data",
    "def return value of the list and the dict",
    "import module then class object type error",
    "python code for the token layer is not none",
    "a file line with data and a number",
)


def tiny_documents(n: int = 200) -> list[str]:
    """``n`` documents of three :data:`TINY_DOCS` each, in a fixed varied order."""
    return [" ".join([TINY_DOCS[i % 5], TINY_DOCS[(i * 3 + 1) % 5], TINY_DOCS[(i + 2) % 5]]) for i in range(n)]


def tiny_tokenizer() -> Any:
    """A word-level fast tokenizer, GPT-2 style: ``<|endoftext|>`` is BOS and EOS, no PAD."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<|endoftext|>": 1}
    for w in TINY_WORDS:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>",
                                   bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   model_max_length=64)


def bert_tokenizer() -> Any:
    """The bundled MiniLM (BERT uncased) tokenizer: [CLS]/[SEP]/[PAD], vocab 30522."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def tiny_model(family: str = "gpt2", n_layers: int = 3, d_model: int = 32, seed: int = 0,
               max_positions: int = 64) -> ModelHandle:
    """A random-weight model of ``family`` (``gpt2``, ``qwen3`` causal LMs; ``bert`` encoder)."""
    import transformers as T

    torch.manual_seed(seed)
    if family == "bert":
        tok = bert_tokenizer()
        cfg = T.BertConfig(num_hidden_layers=n_layers, hidden_size=d_model,
                           intermediate_size=2 * d_model, num_attention_heads=2,
                           vocab_size=tok.vocab_size, max_position_embeddings=max_positions)
        model = T.BertModel(cfg)
    elif family in ("gpt2", "qwen3"):
        tok = tiny_tokenizer()
        v = len(tok)
        if family == "gpt2":
            cfg = T.GPT2Config(n_layer=n_layers, n_embd=d_model, n_head=2, vocab_size=v,
                               n_positions=max_positions, bos_token_id=1, eos_token_id=1)
            model = T.GPT2LMHeadModel(cfg)
        else:
            cfg = T.Qwen3Config(num_hidden_layers=n_layers, hidden_size=d_model,
                                intermediate_size=2 * d_model, num_attention_heads=2,
                                num_key_value_heads=1, head_dim=d_model // 2, vocab_size=v,
                                max_position_embeddings=max_positions, bos_token_id=1,
                                eos_token_id=1, pad_token_id=None)
            model = T.Qwen3ForCausalLM(cfg)
    else:
        raise ValueError(f"tiny_model: family must be one of {FAMILIES}, got {family!r}")
    return ModelHandle.from_model(model.eval(), tok, name=f"tiny-{family}")


def save_tiny_model(path, family: str = "gpt2", **kw: Any):
    """Write a :func:`tiny_model` and its tokenizer to the directory ``path`` (usable as ``--model
    PATH``); returns the path."""
    from pathlib import Path

    handle = tiny_model(family, **kw)
    handle.model.save_pretrained(path)
    handle.tokenizer.save_pretrained(path)
    return Path(path)


def save_tiny_gguf(path, d_model: int = 16, n_layers: int = 2, n_heads: int = 2, n_kv_heads: int = 1,
                   d_ff: int = 32, seed: int = 0) -> None:
    """Write a tiny random-weight Llama as a GGUF file (float32 tensors, a 103-token byte-level BPE
    tokenizer with ChatML specials, as SmolLM2's file has): the GGUF loading path without the 98 MB
    model. Needs the ``gguf`` package (extra ``smollm2``)."""
    import numpy as np

    from ..extras import require

    gguf = require("smollm2")
    rng = np.random.default_rng(seed)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + [chr(c) for c in range(33, 127)] + ["th", "the", "an", "in", "Ġ"]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(n_layers)
    w.add_context_length(64)
    w.add_embedding_length(d_model)
    w.add_feed_forward_length(d_ff)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_rope_dimension_count(d_model // n_heads)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(specials) + [1] * (len(tokens) - len(specials)))
    w.add_token_merges(["t h", "th e", "a n", "i n"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    d_kv = n_kv_heads * d_model // n_heads
    w.add_tensor("token_embd.weight", rand(len(tokens), d_model))
    for i in range(n_layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d_model, np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", rand(d_model, d_model))
        w.add_tensor(f"blk.{i}.attn_k.weight", rand(d_kv, d_model))
        w.add_tensor(f"blk.{i}.attn_v.weight", rand(d_kv, d_model))
        w.add_tensor(f"blk.{i}.attn_output.weight", rand(d_model, d_model))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d_model, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", rand(d_ff, d_model))
        w.add_tensor(f"blk.{i}.ffn_up.weight", rand(d_ff, d_model))
        w.add_tensor(f"blk.{i}.ffn_down.weight", rand(d_model, d_ff))
    w.add_tensor("output_norm.weight", np.ones(d_model, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
