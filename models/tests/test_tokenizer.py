"""The CLIP tokenizer files derived from open_clip's BPE file tokenize like open_clip itself.

Three tokenizers are compared on varied prompts:
* open_clip's ``SimpleTokenizer`` (the original CLIP pipeline: ftfy.fix_text, html.unescape twice,
  whitespace collapse, lower case) - the reference;
* transformers' slow ``CLIPTokenizer`` on our vocab.json/merges.txt (runs ftfy.fix_text; what diffusers
  uses by default) - must equal the reference on every prompt here;
* ``CLIPTokenizerFast`` / ``tokenizer.json`` (NFC + whitespace + lower case, no ftfy, no HTML unescape;
  what the Rust ``tokenizers`` crate runs) - must equal the reference on ordinary prompts. On text that
  ftfy or the HTML unescape would change (entities, curly quotes, ligatures, fullwidth forms, mojibake) it
  differs; those prompts are listed in FTFY_DEPENDENT and the difference is documented in README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tooling import clip_vocab

ORDINARY = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "",
    "   leading and trailing spaces   ",
    "multiple   spaces\tand\ttabs\nand newlines",
    "masterpiece, best quality, 1girl, solo, looking at viewer, (smile:1.2), [blurry]",
    "numbers 1234567890 and 3.14159 and 2nd 3rd",
    "it's what they've done, we'll see, i'm sure you'd agree, don't",
    "café naïve résumé über façade",
    "emoji 🐱🚀✨ and symbols ©®™ ±×÷",
    "日本語のテキストと中文字符",
    "Ελληνικά и русский текст",
    "hyphen-ated words_with_underscores and/slashes",
    "punctuation!!! ??? ... --- ;;; ::: <angle> {curly} [square] (round)",
    "a very long prompt " + "with many repeated words " * 20,
    "UPPERCASE SHOUTING PROMPT WITH NUMBERS 42",
    "an astronaut riding a horse on mars, digital art, trending on artstation, 8k",
    "tab\tseparated\tvalues and a\u00a0non-breaking space",
    "accents combining e\u0301 vs precomposed \u00e9",
]

# Prompts whose ids depend on ftfy / HTML unescaping (slow tokenizer = open_clip; fast may differ).
FTFY_DEPENDENT = [
    "html entities &amp; &lt;tag&gt; &quot;quoted&quot;",
    "curly quotes \u2019single\u2019 \u201cdouble\u201d and it\u2019s",
    "ligatures \ufb01ne \ufb02ower and fullwidth \uff21\uff22\uff23\uff11\uff12\uff13",
    "mojibake caf\u00c3\u00a9 and na\u00c3\u00afve",
]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tokenizer")
    clip_vocab.write_tokenizer_dir(d)
    return d


@pytest.fixture(scope="module")
def reference():
    return clip_vocab.load_open_clip_tokenizer()


def _ref_ids(ref, text: str) -> list[int]:
    return [clip_vocab.BOS_ID] + ref.encode(text) + [clip_vocab.EOS_ID]


def test_vocab_shape():
    vocab = clip_vocab.build_vocab()
    assert len(vocab) == 49408
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["!"] == 0 and vocab["a</w>"] == 320
    assert len(clip_vocab.load_merges()) == 48894


def test_vocab_equals_open_clip_encoder(reference):
    ours = clip_vocab.build_vocab()
    theirs = dict(reference.encoder)
    theirs["<|startoftext|>"] = theirs.pop("<start_of_text>")
    theirs["<|endoftext|>"] = theirs.pop("<end_of_text>")
    assert ours == theirs


def test_written_files(tok_dir):
    assert json.loads((tok_dir / "vocab.json").read_text(encoding="utf-8")) == clip_vocab.build_vocab()
    merges = (tok_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) == 48895
    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["model_max_length"] == 77 and cfg["pad_token"] == "<|endoftext|>"
    tj = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert tj["model"]["end_of_word_suffix"] == "</w>"
    assert tj["post_processor"]["cls"] == ["<|startoftext|>", 49406]
    assert tj["post_processor"]["sep"] == ["<|endoftext|>", 49407]


def test_example_ids(tok_dir):
    from transformers import CLIPTokenizerFast

    fast = CLIPTokenizerFast.from_pretrained(str(tok_dir))
    assert fast("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("text", ORDINARY + FTFY_DEPENDENT)
def test_slow_tokenizer_with_ftfy_matches_open_clip(tok_dir, reference, text):
    from transformers import CLIPTokenizer

    slow = CLIPTokenizer.from_pretrained(str(tok_dir))
    assert slow.fix_text is not None, "ftfy must be installed for the slow tokenizer to match CLIP"
    assert slow(text).input_ids == _ref_ids(reference, text)


@pytest.mark.parametrize("text", ORDINARY)
def test_fast_tokenizer_matches_open_clip_on_ordinary_prompts(tok_dir, reference, text):
    from transformers import CLIPTokenizerFast

    fast = CLIPTokenizerFast.from_pretrained(str(tok_dir))
    assert fast(text).input_ids == _ref_ids(reference, text)


def test_fast_tokenizer_known_differences(tok_dir, reference):
    """Documented, not required: the fast tokenizer skips ftfy/HTML cleanup, so these usually differ."""
    from transformers import CLIPTokenizerFast

    fast = CLIPTokenizerFast.from_pretrained(str(tok_dir))
    differing = [t for t in FTFY_DEPENDENT if fast(t).input_ids != _ref_ids(reference, t)]
    assert differing, "fast tokenizer now equals open_clip on the ftfy-dependent prompts: update README.md"


def test_literal_special_token_text(tok_dir):
    """Documented: transformers (slow and fast, so also Rust) turn the literal text ``<|endoftext|>`` in a
    prompt into the special id 49407; open_clip names its specials differently and BPE-encodes the text."""
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    text = "a <|endoftext|> b"
    for cls in (CLIPTokenizer, CLIPTokenizerFast):
        assert cls.from_pretrained(str(tok_dir))(text).input_ids == [49406, 320, 49407, 321, 49407]


def test_padding_and_truncation_as_diffusers(tok_dir, reference):
    from transformers import CLIPTokenizer

    slow = CLIPTokenizer.from_pretrained(str(tok_dir))
    long_text = "word " * 100
    ids = slow(long_text, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407
    assert ids[1:76] == reference.encode(long_text)[:75]
    short = slow("a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert short[:4] == [49406, 320, 2368, 49407] and set(short[4:]) == {49407}
