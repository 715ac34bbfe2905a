import logging

import httpx

from pytake_common.logging import hide_url_queries


def test_http_client_records_lose_their_query_strings(caplog):
    hide_url_queries()
    hide_url_queries()  # idempotent: one filter
    assert len(logging.getLogger("httpx").filters) == 1
    caplog.set_level(logging.DEBUG)
    base = "https://lookaside.fbsbx.com/whatsapp_business/attachments/"
    url = httpx.URL(base + "?mid=1&hash=SIG")
    logging.getLogger("httpx").info(
        'HTTP Request: %s %s "%s %d %s"', "GET", url, "HTTP/1.1", 200, "OK"
    )
    logging.getLogger("httpx").info("fetched https://bucket.s3/x?X-Amz-Signature=SIG done")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f'HTTP Request: GET {base}?[redacted] "HTTP/1.1 200 OK"',
        "fetched https://bucket.s3/x?[redacted] done",
    ]
