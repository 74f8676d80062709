"""Tiny locally built causal LMs for tests, demos and benchmarks (no downloads).

A character-level tokenizer built with `tokenizers` and a small Llama-architecture transformers
model with random weights, saved with `save_pretrained` so every caller uses the real path:
`AutoModelForCausalLM.from_pretrained(path)` / `AutoTokenizer.from_pretrained(path)`.

    python -m orchestrator.generation.tiny /tmp/tiny-model
"""

from __future__ import annotations

import string
import sys
from pathlib import Path

from orchestrator.core.files import honour_umask

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARS = list(string.printable.replace("\x0b", "").replace("\x0c", ""))
# A minimal chat template: enough for `apply_chat_template` on verl-style `prompt` messages.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # one token per character
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(
    path: str | Path,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
    max_positions: int = 1024,
    init_std: float = 0.02,
) -> Path:
    """Write a tiny random-weight model + tokenizer to `path`; returns the path. With the default
    init_std greedy decoding repeats one character; init_std=0.3 gives varied text (engine
    comparisons), and heads = hidden / 32 gives head_dim 32, a size vLLM's CPU attention takes."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    path = Path(path)
    tokenizer = build_tokenizer()
    # Llama, not Qwen2: for model types like qwen2, AutoTokenizer swaps in its own tokenizer class,
    # which would drop this tokenizer's spaces; for llama it loads tokenizer.json as written.
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        initializer_range=init_std,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    honour_umask(path)  # safetensors writes the weights 0600
    return path


if __name__ == "__main__":
    print(build_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-model"))


def build_encoder(path: str | Path, words: list[str], hidden: int = 64, layers: int = 1, seed: int = 0) -> Path:
    """A tiny random-weight BERT sentence encoder (word-level tokenizer over `words`, lower-cased),
    saved as a plain HF directory: `SentenceTransformer(path)` adds mean pooling to it."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*specials, *(w.lower() for w in words)]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    honour_umask(path)
    return path
