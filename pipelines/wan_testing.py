"""Tiny random Wan components built in code (no hub): a T5-shaped tokenizer and encoder config standing in for
diffusers' `hf-internal-testing/tiny-random-t5`, and the transformer / VAE / scheduler sizes of diffusers' own Wan
pipeline test. The `wan-tiny` preset and the tests (tests/wan_helpers.py) build from here."""
from __future__ import annotations

import torch

#: words of the test prompts, each one token; anything else falls back to characters, then <unk>
T5_WORDS = ("dance", "monkey", "negative", "a", "red", "bright", "dark", "video", "of", "the", "cat", "sky")
T5_VOCAB = 1000  # ids < this; the tiny T5's embedding table


def build_t5_tokenizer(words=T5_WORDS):
    """A `PreTrainedTokenizerFast` in T5's shape (pad 0, eos 1, unk 2; eos appended) from a small word-level
    vocabulary plus single characters, built in memory with `tokenizers`."""
    import string

    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in list(words) + list(string.ascii_lowercase + string.digits + string.punctuation):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512)


def tiny_t5_config():
    """A T5 encoder config of the tiny-random-t5 kind: d_model 32 (Wan's `text_dim` in the test)."""
    from transformers import T5Config

    return T5Config(vocab_size=T5_VOCAB, d_model=32, d_ff=37, d_kv=8, num_layers=5, num_heads=4,
                    relative_attention_num_buckets=8, dropout_rate=0.1, feed_forward_proj="relu",
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def tiny_wan_components(scheduler=None, layers: int = 2):
    """diffusers' tests/pipelines/wan/test_wan.py components with the offline T5 (seeded as there)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import T5EncoderModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(0)
    scheduler = scheduler or FlowMatchEulerDiscreteScheduler(shift=7.0)
    text_encoder = T5EncoderModel(tiny_t5_config()).eval()
    tokenizer = build_t5_tokenizer()
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=layers, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )
    return {"transformer": transformer, "vae": vae, "scheduler": scheduler, "text_encoder": text_encoder,
            "tokenizer": tokenizer, "transformer_2": None}
