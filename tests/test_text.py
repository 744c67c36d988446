"""Offline text corpora as byte-token windows."""

import numpy as np
import pytest

from sweepjax.engine.text import VOCAB_SIZE, corpus_text, decode, digest, encode, token_windows


@pytest.fixture(scope="module")
def windows():
    return token_windows("pydoc", seq_len=32, val_size=50, test_size=40)


def test_same_text_and_windows_on_every_call(windows):
    assert corpus_text() == corpus_text()
    again = token_windows("pydoc", seq_len=32, val_size=50, test_size=40)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(windows, split), getattr(again, split))
    assert windows.digest == again.digest == digest(corpus_text())
    assert len(windows.digest) == 12 and windows.digest in windows.describe()


def test_window_shapes_dtypes_and_vocabulary(windows):
    assert windows.vocab_size == VOCAB_SIZE == 256
    assert windows.val.shape == (50, 33) and windows.test.shape == (40, 33)
    assert windows.train.shape[1] == 33 and len(windows.train) > 10_000
    for split in (windows.train, windows.val, windows.test):
        assert split.dtype == np.int32 and split.min() >= 0 and split.max() < VOCAB_SIZE


def test_splits_are_disjoint_contiguous_regions_in_text_order(windows):
    """Stacked train, val, test: the text's tokens from its start, each exactly once."""
    tokens = encode(corpus_text())
    stacked = np.concatenate([windows.train, windows.val, windows.test]).ravel()
    np.testing.assert_array_equal(stacked, tokens[: len(stacked)])
    assert len(tokens) - len(stacked) < 33  # only a partial last window is dropped


def test_a_window_decodes_to_its_corpus_text(windows):
    text = corpus_text()
    window = decode(windows.val[7])
    assert "\ufffd" in window or window in text
    start = (len(windows.train) + 7) * 33
    assert window == text.encode("utf-8")[start : start + 33].decode("utf-8", errors="replace")
    assert decode(encode(text)) == text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "shakespeare"}, r"unknown text corpus 'shakespeare'; allowed: \['pydoc'\]"),
        ({"seq_len": 0}, r"seq_len: 0 is not allowed; allowed: integers >= 1"),
        ({"test_size": -1}, r"test_size: -1 is not allowed; allowed: integers >= 0"),
        ({"val_size": 10**7}, r"val_size: 10000000 and test_size 500 leave no training windows"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        token_windows(**kwargs)
