"""The B1 connector's ``$batch`` wire format: what it writes, and how it reads answers written
the way the Service Layer manual's examples (§3.10.6, p.85-87) write them — no space after
header colons, a change set's answers nested, a failed change set's single answer."""

from __future__ import annotations

import pytest

from handlers.connectors.b1.batch import (
    BatchAnswer,
    BatchRequest,
    MalformedAnswer,
    batch_answers,
    batch_body,
)

BATCH = "batchresponse_d878cedc-a0ad-4025-823e-5ee1aaffa288"
CHANGES = "changesetresponse_8bfb3c36-dbf7-46a0-bdfe-670bbac86eb2"
ITEM = '{"ItemCode":"i001"}'
LOCATION = "https://databaseserver:50000/b1s/v1/Items('i002')"
ERROR = (
    '{\n   "error" : {\n      "code" : -10,\n      "innererror" : {\n         "context" : null,'
    '\n         "trace" : null\n      },\n      "message" : {\n         "lang" : "en-us",\n'
    '         "value" : "Item code \'i002\' already exists"\n      }\n   }\n}'
)


def manual_answer(*parts: str) -> tuple[str, bytes]:
    body = "".join(f"--{BATCH}\n{part}\n" for part in parts) + f"--{BATCH}--\n"
    return f"multipart/mixed;boundary={BATCH}", body.encode()


def http_part(status: str, body: str = "", *headers: str) -> str:
    head = "\n".join(["Content-Type:application/http", "Content-Transfer-Encoding:binary", *
                      headers[:1]])  # fmt: skip
    lines = [f"HTTP/1.1 {status}", *headers[1:]]
    if body:
        lines += ["Content-Type:application/json;odata=minimalmetadata;charset=utf-8",
                  f"Content-Length:{len(body)}"]  # fmt: skip
    return head + "\n\n" + "\n".join(lines) + "\n\n" + body


def test_a_batch_writes_independent_parts_with_absolute_paths_and_an_unquoted_boundary() -> None:
    body = batch_body(
        "batch_1",
        "/b1s/v1",
        [
            BatchRequest(method="POST", path="/Orders", body=b'{"CardCode":"C1"}',
                         operation="Orders", headers=(("Prefer", "return-no-content"),)),
            BatchRequest(method="GET", path="/Items('A')", operation="Items"),
        ],
    )  # fmt: skip
    assert body == (
        b"--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"POST /b1s/v1/Orders HTTP/1.1\r\nPrefer: return-no-content\r\n"
        b'Content-Type: application/json\r\n\r\n{"CardCode":"C1"}\r\n'
        b"--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"GET /b1s/v1/Items('A') HTTP/1.1\r\n\r\n\r\n"
        b"--batch_1--\r\n"
    )
    assert b"changeset" not in body


def test_the_manuals_successful_answer_is_read_part_by_part_change_set_flattened() -> None:
    change_set = (
        f"Content-Type:multipart/mixed;boundary={CHANGES}\n\n"
        f"--{CHANGES}\n"
        + http_part("201 Created", ITEM, "Content-ID:1", f"Location:{LOCATION}")
        + f"\n--{CHANGES}\n"
        + http_part("204 No Content", "", "Content-ID:2")
        + f"\n--{CHANGES}--"
    )  # fmt: skip
    answers = batch_answers(*manual_answer(http_part("200 OK", ITEM), change_set))
    assert [(a.status, a.body) for a in answers] == [
        (200, ITEM.encode()), (201, ITEM.encode()), (204, b""),
    ]  # fmt: skip
    assert answers[1].header("Location") == LOCATION


def test_the_manuals_failed_change_set_is_one_answer_with_b1s_error_body() -> None:
    failed = http_part("400 Bad Request", ERROR)
    answers = batch_answers(*manual_answer(http_part("200 OK", ITEM), failed))
    assert [a.status for a in answers] == [200, 400]
    assert answers[1].body == ERROR.encode()
    assert answers[1].header("content-type") == (
        "application/json;odata=minimalmetadata;charset=utf-8"
    )


def test_a_body_with_crlf_and_utf8_is_kept_to_the_byte() -> None:
    body = '{"Comments": "Zürich\nline 2"}'  # CRLF below, as Service Layer sends it
    content_type, raw = manual_answer(http_part("201 Created", body))
    assert batch_answers(content_type, raw.replace(b"\n", b"\r\n")) == [
        BatchAnswer(201, {"content-type": "application/json;odata=minimalmetadata;charset=utf-8",
                          "content-length": str(len(body))}, body.replace("\n", "\r\n").encode()),
    ]  # fmt: skip


HTML_PART = f"--{BATCH}\nContent-Type:text/html\n\n<p>\n--{BATCH}--\n".encode()
NOT_HTTP = manual_answer("Content-Type:application/http\n\nnot HTTP")[1]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"error": {}}'),
        (f"multipart/mixed;boundary={BATCH}", b"no parts at all"),
        (f"multipart/mixed;boundary={BATCH}", HTML_PART),
        (f"multipart/mixed;boundary={BATCH}", NOT_HTTP),
    ],
)
def test_what_is_not_a_batch_answer_is_malformed(content_type: str, body: bytes) -> None:
    with pytest.raises(MalformedAnswer):
        batch_answers(content_type, body)
