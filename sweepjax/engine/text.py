"""Offline text corpora as byte tokens, cut into windows for next-token training.

The one corpus, `"pydoc"`, is the English text of the Python documentation's topics that every
CPython ships in its standard library (`pydoc_data.topics`): no download, on every machine.

Tokens are the bytes of the UTF-8 text, so the vocabulary is `VOCAB_SIZE` = 256 for every corpus
and every Python version, any text encodes losslessly, and a model's `vocab_size` can be set
before the data is read. (A vocabulary of the characters present would be smaller, but its size
and numbering would change with the text; here about 0.1% of the characters take more than one
byte.)

>>> windows = token_windows("pydoc", seq_len=64, val_size=100, test_size=100)
>>> windows.train.shape[1], windows.val.shape, windows.vocab_size
(65, (100, 65), 256)
>>> x, y = windows.train[:, :-1], windows.train[:, 1:]  # inputs, and next tokens as targets
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

VOCAB_SIZE = 256  # byte tokens


def _pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n".join(topics[name] for name in sorted(topics))


CORPORA: dict[str, Callable[[], str]] = {"pydoc": _pydoc_text}


def corpus_text(name: str = "pydoc") -> str:
    """The text of corpus `name`, the same on every call for one Python version.

    `"pydoc"` joins the topics of `pydoc_data.topics` in sorted topic order; the text differs
    slightly between Python versions, so `TokenWindows.digest` records which text was used.

    >>> text = corpus_text()
    >>> len(text) > 100_000, "assert" in text[:100]  # the first topic: the assert statement
    (True, True)
    """
    if name not in CORPORA:
        raise ValueError(f"dataset: unknown text corpus {name!r}; allowed: {sorted(CORPORA)}.")
    return CORPORA[name]()


def encode(text: str) -> np.ndarray:
    """The byte tokens (int32) of `text` in UTF-8.

    >>> encode("hé").tolist()
    [104, 195, 169]
    """
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)


def decode(tokens: np.ndarray) -> str:
    """The text of byte tokens; a character cut by a window's edge decodes as U+FFFD.

    >>> decode(encode("hé")), decode(encode("hé")[:2])
    ('hé', 'h\ufffd')
    """
    return np.asarray(tokens, np.uint8).tobytes().decode("utf-8", errors="replace")


def digest(text: str) -> str:
    """A short fingerprint of a text: the first 12 hex digits of the SHA-256 of its UTF-8.

    >>> digest("")
    'e3b0c44298fc'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


class TokenWindows(NamedTuple):
    """Non-overlapping windows of `seq_len + 1` byte tokens per split (int32 `[n, seq_len + 1]`).

    A window `w` is one example: inputs `w[:-1]`, targets `w[1:]`. Each split is one contiguous
    region of the text (train, then val, then test), so no val or test text is seen in training.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    vocab_size: int
    digest: str  # of the corpus text (see `digest`)

    def describe(self) -> str:
        return (
            f"{self.name} (text sha256 {self.digest}): {len(self.train)} train / {len(self.val)} "
            f"val / {len(self.test)} test windows of {self.train.shape[1]} byte tokens, "
            f"vocabulary {self.vocab_size}"
        )


def token_windows(
    name: str = "pydoc", seq_len: int = 64, val_size: int = 500, test_size: int = 500
) -> TokenWindows:
    """Corpus `name` cut into windows of `seq_len + 1` tokens: the last `test_size` windows are
    test, the `val_size` before them val, the rest train (in text order; a partial window at the
    end is dropped). A fixed function of its arguments and the text: there is no seed. For
    `"pydoc"`, val and test are the alphabetically last topics, so they measure how well a model
    predicts text on topics it has not trained on.

    >>> token_windows(seq_len=0)
    Traceback (most recent call last):
    ...
    ValueError: seq_len: 0 is not allowed; allowed: integers >= 1.
    """
    for key, value, low in (
        ("seq_len", seq_len, 1),
        ("val_size", val_size, 0),
        ("test_size", test_size, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{key}: {value!r} is not allowed; allowed: integers >= {low}.")
    text = corpus_text(name)
    tokens = encode(text)
    count = len(tokens) // (seq_len + 1)
    if val_size + test_size >= count:
        raise ValueError(
            f"val_size: {val_size} and test_size {test_size} leave no training windows of the "
            f"{count} windows of {seq_len + 1} tokens in {name!r}; allowed: val_size + test_size "
            f"< {count}."
        )
    windows = tokens[: count * (seq_len + 1)].reshape(count, seq_len + 1)
    train_end, val_end = count - val_size - test_size, count - test_size
    return TokenWindows(
        name,
        windows[:train_end],
        windows[train_end:val_end],
        windows[val_end:],
        VOCAB_SIZE,
        digest(text),
    )
