"""The raw delivery's jsonb text: the body as sent when PostgreSQL reads it as Python did."""

import json

import pytest

from pytake_whatsapp_gateway.webhooks.intake import _body_text
from pytake_whatsapp_gateway.webhooks.parsing import parse_body

PLAIN = b'{"object":"whatsapp_business_account","entry":[{"id":"1","n":1e400}]}'


def test_a_plain_body_is_stored_as_sent() -> None:
    # not re-encoded: 1e400 stays a number (Python reads it as inf, which jsonb refuses)
    assert _body_text(PLAIN, parse_body(PLAIN)) == PLAIN.decode()


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf" + PLAIN,  # a UTF-8 byte order mark: json.loads skips it, jsonb not
        json.dumps({"entry": [], "t": "\u00e9"}).encode("utf-16"),
        b'{"entry":[],"t":"a\\u0000b"}',  # NUL: parse_body replaced it
        b'{"entry":[],"t":"\xed\xa0\x80"}',  # an encoded surrogate, which json.loads reads
        b'{"entry":[],"n":1e-20000}',  # 0.0 to Python, past numeric's scale for jsonb
        b'{"entry":[],"n":0.' + b"0" * 17000 + b"1}",  # likewise
        b'{"entry":[],"n":1.' + b"0" * 16000 + b"1e-500}",  # likewise
    ],
)
def test_anything_else_is_the_payload_encoded_again(body: bytes) -> None:
    payload = parse_body(body)
    assert _body_text(body, payload) == json.dumps(payload)


def test_small_exponents_and_short_fractions_are_stored_as_sent() -> None:
    body = b'{"entry":[],"n":1.5e-300,"t":"e-mail","f":0.' + b"1" * 999 + b"}"
    assert _body_text(body, parse_body(body)) == body.decode()
