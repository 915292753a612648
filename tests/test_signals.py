"""Signal types: what each declares, and the one hex <-> bytes conversion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashdb.errors import InvalidInput
from hashdb.signals import (
    KEYPOINTS,
    MD5,
    PDQ,
    PHASH,
    SHA256,
    SIGNAL_TYPES,
    VPDQ,
    Matching,
    get_signal_type,
)
from hashdb.signals.vpdq import Frame, format_frames, frames_digest, parse_frames


def test_each_signal_type_declares_name_bits_threshold_and_matching() -> None:
    assert (PDQ.bits, PDQ.default_threshold, PDQ.matching) == (256, 31, Matching.HAMMING)
    assert (PHASH.bits, PHASH.default_threshold, PHASH.matching) == (64, 4, Matching.HAMMING)
    assert (MD5.bits, MD5.matching) == (128, Matching.EXACT)
    assert (SHA256.bits, SHA256.matching) == (256, Matching.EXACT)
    assert PDQ.min_quality == 50
    assert (VPDQ.bits, VPDQ.default_threshold, VPDQ.matching) == (256, 31, Matching.VIDEO)
    assert (KEYPOINTS.default_threshold, KEYPOINTS.matching) == (0, Matching.LOCAL)
    assert KEYPOINTS.min_quality == 24  # keypoints in the set
    assert set(SIGNAL_TYPES) == {"pdq", "phash", "md5", "sha256", "vpdq", "keypoints"}


@pytest.mark.parametrize("signal", list(SIGNAL_TYPES.values()), ids=lambda s: s.name)
@given(data=st.data())
def test_hex_round_trips_through_raw_bytes(signal, data) -> None:  # type: ignore[no-untyped-def]
    raw = data.draw(st.binary(min_size=signal.nbytes, max_size=signal.nbytes))
    text = signal.format(raw)
    assert text == raw.hex() and len(text) == signal.hex_length
    assert signal.parse(text) == raw
    assert signal.parse(text.upper()) == raw


_HEXISH = st.text(alphabet="0123456789abcdefABCDEF \t\n-xzé٣", max_size=70)


@pytest.mark.parametrize("signal", [PDQ, PHASH, MD5], ids=lambda s: s.name)
@given(text=_HEXISH)
def test_any_text_parses_to_its_exact_bytes_or_is_refused(signal, text: str) -> None:  # type: ignore[no-untyped-def]
    """Whatever the text, parse gives back the bytes whose hex is the text stripped of
    surrounding whitespace (any case), or refuses it: never bytes of another text."""
    stripped = text.strip()
    valid = len(stripped) == signal.hex_length and all(
        c in "0123456789abcdefABCDEF" for c in stripped
    )
    if valid:
        assert signal.parse(text).hex() == stripped.lower()
    else:
        with pytest.raises(InvalidInput):
            signal.parse(text)


# 64 characters each: as many as a PDQ hash has digits, yet not 32 bytes of hex
@pytest.mark.parametrize(
    "text", ["ab" * 31 + " a", "ab" * 15 + "a b" + "ab" * 15 + "c", "٣" * 64, "ab" * 30 + "0x1f"]
)
def test_text_of_the_right_length_with_spaces_or_other_digits_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        PDQ.parse(text)


def test_a_hash_of_the_wrong_length_is_an_error_naming_the_field_and_index() -> None:
    with pytest.raises(InvalidInput) as info:
        PDQ.parse("ab" * 10, field="queries.value", index=3)
    assert info.value.field == "queries.value"
    assert info.value.index == 3
    assert "64 hex digits" in info.value.message


def test_a_hash_with_non_hex_digits_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="only hex digits"):
        PHASH.parse("zz" * 8)


def test_a_hash_that_is_not_a_string_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="hex string"):
        MD5.parse(12345)


def test_an_unknown_signal_type_name_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        get_signal_type("tmk", index=0)
    assert "md5, pdq, phash, sha256" in info.value.message
    assert info.value.field == "signal_type"


def test_format_refuses_bytes_of_the_wrong_length() -> None:
    with pytest.raises(ValueError):
        PDQ.format(b"\x00" * 8)


def test_a_vpdq_frame_list_round_trips_through_the_vpdq_text_format() -> None:
    frames = [Frame(0, 0.0, bytes(range(32)), 90), Frame(25, 1.0, bytes(32), 55)]
    text = format_frames(frames)
    assert text.splitlines()[0] == f"0,90,{bytes(range(32)).hex()},0.000"
    assert parse_frames(text) == frames
    assert frames_digest(parse_frames(text)) == frames_digest(frames)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "at least one frame"),
        ("0,90,abcd", "frame_number,quality,pdq_hex,timestamp"),
        ("x,90," + "0" * 64 + ",0.0", "numbers expected"),
        ("0,101," + "0" * 64 + ",0.0", "out of range"),
        ("0,90," + "0" * 64 + ",nan", "out of range"),
        ("0,90," + "0" * 63 + ",0.0", "64 hex digits"),
    ],
)
def test_a_malformed_vpdq_frame_list_names_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        parse_frames(text, field="frames", index=0)
