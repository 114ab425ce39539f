"""The CLIP tokenizer, built offline from the BPE vocabulary that open-clip-torch ships.

Stable Diffusion 1.x, 2.x and SDXL all use OpenAI's CLIP BPE (49,408 tokens); they
differ only in the padding token (SDXL's second tokenizer, for OpenCLIP bigG, pads with
"!" like SD 2). Building it here means no tokenizer is ever fetched from a model hub,
and every checkpoint gets the same one.
"""

import functools
import gzip
import importlib.util
import os

from transformers import CLIPTokenizer

PAD_TOKENS = {"sd1": "<|endoftext|>", "sd2": "!", "sdxl": "<|endoftext|>"}
SDXL_SECOND_PAD_TOKEN = "!"
MAX_LENGTH = 77

_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# The gzip holds a version line, then merges; CLIP uses the first 49152 - 256 - 2 of them.
_MERGE_COUNT = 49152 - 256 - 2


def clip_tokenizer(architecture):
    """The (first) tokenizer of `architecture`."""
    return _tokenizer(PAD_TOKENS[architecture])


def pipeline_tokenizers(architecture):
    """The tokenizer arguments of `architecture`'s diffusers pipeline."""
    tokenizers = {"tokenizer": clip_tokenizer(architecture)}
    if architecture == "sdxl":
        tokenizers["tokenizer_2"] = _tokenizer(SDXL_SECOND_PAD_TOKEN)
    return tokenizers


def _tokenizer(pad_token):
    vocab, merges = _bpe()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=MAX_LENGTH, pad_token=pad_token)


def _vocab_path():
    # find_spec locates the package without importing it (its import needs torchvision).
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open-clip-torch is not installed (runner/requirements-nodeps.txt): "
                                "its CLIP vocabulary is needed for the tokenizer")
    return os.path.join(list(spec.submodule_search_locations)[0], _VOCAB_FILE)


@functools.cache
def _bpe():
    with gzip.open(_vocab_path(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1:1 + _MERGE_COUNT])
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return tuple((token, index) for index, token in enumerate(tokens)), merges


def _byte_symbols():
    """GPT-2's reversible byte-to-unicode table, in CLIP's vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]
