"""The protocol tokenizer (model §5), built locally: a word-level vocabulary over the grammar's
and the prompts' words, digits one token each, the SIE tags single tokens.

Ids 0..3 are ``<pad>``, ``</s>`` (eos), ``<unk>``, ``<s>`` (bos), so T5's convention (pad = decoder
start = 0, eos = 1) holds. It is a :class:`transformers.PreTrainedTokenizerFast` and round-trips
through ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` offline.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from mfsg.language import prompts

PAD, EOS, UNK, BOS = "<pad>", "</s>", "<unk>", "<s>"
SPECIALS = (PAD, EOS, UNK, BOS)
DIGITS = tuple(str(d) for d in range(10))


def vocabulary() -> list[str]:
    """Specials, SIE tags, digits, then the sorted words (deterministic order)."""
    return [*SPECIALS, *prompts.TAGS, *DIGITS, *prompts.words()]


def build_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False, single_word=False) for t in prompts.TAGS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, bos_token=BOS)


class WordEncoder:
    """Fast exact encoder for the protocol tokenizer: whole words and SIE tags map through the
    vocabulary, digit runs split into digits. Any other word makes it defer to the wrapped
    tokenizer for that text, so results always equal ``tok(text, add_special_tokens=False)``
    (tested); it only avoids the tokenizer's per-call overhead on the prompt hot path."""

    def __init__(self, tok: PreTrainedTokenizerFast):
        self.tok = tok
        self.vocab = tok.get_vocab()
        self.tags = {t: t.replace(" ", "\x00") for t in prompts.TAGS if " " in t}
        self.ids = {w.replace(" ", "\x00"): i for w, i in self.vocab.items()}

    @staticmethod
    def applies(tok) -> bool:
        """Whether ``tok`` is the protocol tokenizer (same vocabulary)."""
        return tok.get_vocab() == {w: i for i, w in enumerate(vocabulary())}

    def encode(self, text: str) -> list[int]:
        for tag, joined in self.tags.items():
            text = text.replace(tag, joined)
        out: list[int] = []
        ids = self.ids
        for w in text.split():
            i = ids.get(w)
            if i is not None and w != UNK:
                out.append(i)
            elif w.isdigit() and w.isascii():
                out.extend(ids[d] for d in w)
            else:
                return self.tok(text.replace("\x00", " "), add_special_tokens=False).input_ids
        return out
