"""``POST /b1s/v1/$batch`` in the Service Layer simulator, over real HTTP: the wire format of
"Working with SAP Business One Service Layer" §3.10 (multipart/mixed, ``application/http``
parts, change sets), sub requests served as they would be alone (session, fault knobs, locks,
drafts, ``Prefer: return-no-content``), change sets all or nothing, a batch stopped at its
first failure, malformed batches refused with B1's error body. The answers are read with
Python's own MIME parser, not the simulator's."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from devstack.sims.b1.server import B1Simulator
from tests.integration.test_b1_sales_sim import stack as sales_stack

pytestmark = pytest.mark.integration

COMPANY = "SBODEMO"
CRLF = "\r\n"


@dataclass(frozen=True)
class Sub:
    """A sub request as the test writes it."""

    method: str
    target: str
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    content_id: str | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    content_id: str | None


def sub(method: str, target: str, body: Any = None, **headers: str) -> Sub:
    return Sub(method, target, body, tuple(headers.items()))


def _http(request: Sub) -> str:
    mime = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if request.content_id is not None:
        mime.append(f"Content-ID: {request.content_id}")
    lines = [f"{request.method} {request.target} HTTP/1.1", *(f"{k}: {v}" for k, v in
             request.headers)]  # fmt: skip
    body = ""
    if request.body is not None:
        lines.append("Content-Type: application/json")
        body = json.dumps(request.body)
    return CRLF.join(mime) + CRLF * 2 + CRLF.join(lines) + CRLF * 2 + body + CRLF


def batch_body(*parts: Sub | Sequence[Sub]) -> tuple[str, bytes]:
    """(Content-Type, body) of a batch of sub requests and change sets (sequences)."""
    boundary = f"batch_{uuid.uuid4()}"
    text = ""
    for part in parts:
        text += f"--{boundary}{CRLF}"
        if isinstance(part, Sub):
            text += _http(part)
        else:
            inner = f"changeset_{uuid.uuid4()}"
            text += f"Content-Type: multipart/mixed;boundary={inner}{CRLF * 2}"
            text += "".join(f"--{inner}{CRLF}{_http(request)}" for request in part)
            text += f"--{inner}--{CRLF}"
    text += f"--{boundary}--{CRLF}"
    return f"multipart/mixed;boundary={boundary}", text.encode()


def _answer(part: email.message.Message) -> Answer:
    assert part.get_content_type() == "application/http"
    assert part["Content-Transfer-Encoding"] == "binary"
    raw = part.get_payload(decode=True)
    assert isinstance(raw, bytes)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split(CRLF)
    version, status, *_ = status_line.split(" ")
    assert version == "HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in header_lines)
    decoded = json.loads(body) if body.strip() else None
    return Answer(int(status), headers, decoded, part["Content-ID"])


def read_answers(content_type: str, body: bytes) -> list[Answer | list[Answer]]:
    message = email.message_from_bytes(
        f"Content-Type: {content_type}{CRLF * 2}".encode() + body, policy=email.policy.HTTP
    )
    assert message.is_multipart()
    answers: list[Answer | list[Answer]] = []
    for part in message.iter_parts():
        if part.is_multipart():
            assert (part.get_boundary() or "").startswith("changesetresponse_")
            answers.append([_answer(inner) for inner in part.iter_parts()])
        else:
            answers.append(_answer(part))
    return answers


@dataclass
class Stack:
    sim: B1Simulator
    session: aiohttp.ClientSession
    cookie: dict[str, str]

    async def batch(
        self, *parts: Sub | Sequence[Sub], cookie: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """The batch's status and its answers (202) or its error body."""
        content_type, body = batch_body(*parts)
        return await self.raw(content_type, body, cookie=cookie)

    async def raw(
        self, content_type: str, body: bytes, cookie: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.session.post(
            f"{self.sim.url}/$batch",
            data=body,
            headers={"Content-Type": content_type},
            cookies=self.cookie if cookie is None else cookie,
        ) as response:
            raw = await response.read()
            if response.status != 202:
                is_json = response.content_type == "application/json"
                return response.status, json.loads(raw) if is_json else raw
            assert response.headers["Content-Type"].startswith(
                "multipart/mixed;boundary=batchresponse_"
            )
            return 202, read_answers(response.headers["Content-Type"], raw)


@asynccontextmanager
async def stack() -> AsyncIterator[Stack]:
    """The sales simulator's stack (10 of A-100 and 4 of C-400 in 01, customer C1, no
    conflict window), logged in."""
    async with sales_stack() as base:
        yield Stack(base.sim, base.session, base.cookie)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def order(reference: str, item: str = "A-100", quantity: int = 1) -> dict[str, Any]:
    return {
        "CardCode": "C1",
        "NumAtCard": reference,
        "DocumentLines": [{"ItemCode": item, "Quantity": quantity, "WarehouseCode": "01"}],
    }


def post_order(reference: str, item: str = "A-100", **headers: str) -> Sub:
    return sub("POST", "/b1s/v1/Orders", order(reference, item), **headers)


def error(answer: Answer | dict[str, Any]) -> tuple[int, str]:
    body = answer.body if isinstance(answer, Answer) else answer
    return body["error"]["code"], body["error"]["message"]["value"]


def statuses(answers: list[Answer | list[Answer]]) -> list[Any]:
    return [[a.status for a in x] if isinstance(x, list) else x.status for x in answers]


# --- the format ---


@pytest.mark.timeout(20)
def test_sub_requests_are_answered_in_order_each_as_it_would_be_alone() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, answers = await s.batch(
                sub("GET", "/b1s/v1/Items('A-100')?$select=ItemCode"),
                post_order("R1"),
                post_order("R2", Prefer="return-no-content"),
                sub("GET", "/b1s/v1/Orders?$filter=NumAtCard%20eq%20'R1'&$select=DocEntry"),
            )
            assert status == 202
            item, created, quiet, found = answers
            assert (item.status, item.body["ItemCode"]) == (200, "A-100")
            assert (created.status, created.body["NumAtCard"]) == (201, "R1")
            assert created.headers["Location"] == "/b1s/v1/Orders(1)"
            assert (quiet.status, quiet.body) == (204, None)
            assert quiet.headers["Location"] == "/b1s/v1/Orders(2)"
            assert quiet.headers["Preference-Applied"] == "return-no-content"
            assert found.body["value"] == [{"DocEntry": 1}]

    run(scenario)


@pytest.mark.timeout(20)
def test_targets_may_be_relative_full_urls_or_lower_case_methods_as_in_the_manual() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, answers = await s.batch(
                sub("post", "Orders", order("R1")),
                sub("POST", f"{s.sim.url}/Orders", order("R2")),
                sub("GET", "Orders(2)?$select=NumAtCard"),
            )
            assert status == 202
            assert statuses(answers) == [201, 201, 200]
            assert answers[2].body["NumAtCard"] == "R2"

    run(scenario)


@pytest.mark.timeout(20)
def test_the_batch_and_each_sub_request_are_recorded_with_the_batch_number() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.batch(post_order("R1"), post_order("R2"))
            await s.batch(post_order("R3"))
            records = [(r.operation, r.method, r.status, r.batch) for r in s.sim.requests]
            assert records[1:] == [
                ("Orders", "POST", 201, 1), ("Orders", "POST", 201, 1), ("$batch", "POST", 202, 1),
                ("Orders", "POST", 201, 2), ("$batch", "POST", 202, 2),
            ]  # fmt: skip
            assert s.sim.requests[1].body["NumAtCard"] == "R1"
            assert s.sim.batches == 2

    run(scenario)


# --- failures ---


@pytest.mark.timeout(20)
def test_a_failed_sub_request_stops_the_batch_the_rest_is_not_executed() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, answers = await s.batch(
                post_order("R1"), post_order("R2", "NOPE"), post_order("R3")
            )
            assert (status, statuses(answers)) == (202, [201, 400])
            assert error(answers[1]) == (-10, "Invalid item code 'NOPE'  [RDR1.ItemCode][line: 1]")
            assert [d.body["NumAtCard"] for d in s.sim.documents] == ["R1"]

    run(scenario)


@pytest.mark.timeout(20)
def test_with_continue_on_error_every_sub_request_is_executed() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(batch_continue_on_error=True)
            status, answers = await s.batch(
                post_order("R1"), post_order("R2", "NOPE"), post_order("R3")
            )
            assert (status, statuses(answers)) == (202, [201, 400, 201])
            assert [d.body["NumAtCard"] for d in s.sim.documents] == ["R1", "R3"]

    run(scenario)


@pytest.mark.timeout(20)
def test_a_batch_without_a_live_session_is_401_and_nothing_is_executed() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, body = await s.batch(post_order("R1"), cookie={})
            assert (status, error(body)) == (401, (301, "Invalid session or session already "
                                                        "timeout."))  # fmt: skip
            s.sim.expire_sessions()
            assert (await s.batch(post_order("R1")))[0] == 401
            assert s.sim.documents == []

    run(scenario)


@pytest.mark.timeout(20)
def test_malformed_batches_are_400_with_b1s_error_body() -> None:
    async def scenario() -> None:
        async with stack() as s:
            content_type, body = batch_body(post_order("R1"))
            truncated = body[: body.rindex(b"--batch_")]
            assert (await s.raw(content_type, truncated))[1]["error"] == {
                "code": -1000,
                "message": {"lang": "en-us", "value": "Incomplete Batch Request Body!"},
            }
            assert (await s.raw("application/json", body))[0] == 400
            no_encoding = body.replace(b"Content-Transfer-Encoding: binary\r\n", b"")
            assert (await s.raw(content_type, no_encoding))[0] == 400
            status, answer = await s.batch([sub("GET", "/b1s/v1/Items('A-100')")])
            assert (status, error(answer)[0]) == (400, -1000)
            bad_line = body.replace(b" HTTP/1.1", b" HTTP/1.1 extra")
            assert (await s.raw(content_type, bad_line))[0] == 400
            s.sim.set_faults(batch_max_parts=2)
            status, answer = await s.batch(post_order("R1"), [post_order("R2"), post_order("R3")])
            assert (status, error(answer)) == (400, (-1000, "A batch request holds at most 2 "
                                                            "requests"))  # fmt: skip
            assert s.sim.documents == []

    run(scenario)


@pytest.mark.timeout(20)
def test_login_and_unknown_paths_in_a_batch_are_answered_as_their_sub_request() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(batch_continue_on_error=True)
            status, answers = await s.batch(
                sub("POST", "/b1s/v1/Login", {"CompanyDB": COMPANY}),
                sub("GET", "/b1s/v1/NoSuchThing"),
                post_order("R1"),
            )
            assert (status, statuses(answers)) == (202, [400, 404, 201])
            assert error(answers[1]) == (-1000, "Resource not found for the segment 'NoSuchThing'")

    run(scenario)


# --- change sets ---


@pytest.mark.timeout(20)
def test_a_change_set_is_answered_part_by_part_and_content_ids_name_what_it_created() -> None:
    async def scenario() -> None:
        async with stack() as s:
            created = Sub("POST", "/b1s/v1/Orders", order("R1"), content_id="1")
            cancel = Sub("POST", "/b1s/v1/$1/Cancel", content_id="2")
            status, answers = await s.batch([created, cancel])
            assert status == 202
            (changes,) = answers
            assert isinstance(changes, list)
            assert [(a.status, a.content_id) for a in changes] == [(201, "1"), (204, "2")]
            assert (s.sim.sales.document("Orders", 1) or {})["Cancelled"] == "tYES"

    run(scenario)


@pytest.mark.timeout(20)
def test_a_failed_change_set_undoes_every_part_and_answers_only_the_failure() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, answers = await s.batch(
                [post_order("R1"), post_order("R2", "C-400"), post_order("R3", "NOPE")],
                post_order("R4"),
            )
            assert (status, statuses(answers)) == (202, [400])  # one answer; the batch stops
            assert error(answers[0])[0] == -10
            assert s.sim.documents == []
            stock = (s.sim.stock("A-100", "01"), s.sim.stock("C-400", "01"))
            assert stock == (Decimal(10), Decimal(4))
            _, again = await s.batch(post_order("R5"))
            assert again[0].body["DocEntry"] == 1  # numbering undone too

    run(scenario)


@pytest.mark.timeout(20)
def test_a_write_outside_a_change_set_waits_until_the_change_set_is_written() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(post_ms=300)
            change_set = s.batch([post_order("R1"), post_order("R2", "NOPE")])
            alone = s.batch(post_order("R3", "C-400"))
            (_, failed), (_, created) = await asyncio.gather(change_set, alone)
            assert statuses(failed) == [400]
            assert statuses(created) == [201]
            assert [d.body["NumAtCard"] for d in s.sim.documents] == ["R3"]  # not undone

    run(scenario)


# --- fault knobs, locks, drafts ---


@pytest.mark.timeout(20)
def test_locks_collisions_and_internal_errors_hit_the_sub_request_an_outage_the_batch() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(lock_storm_rate=1.0)
            _, answers = await s.batch(post_order("R1"), post_order("R2"))
            assert (statuses(answers), error(answers[0])[0]) == ([400], -2039)
            s.sim.set_faults(lock_storm_rate=0.0, collision_count=1)
            _, answers = await s.batch(post_order("R1"), post_order("R2"))
            assert (statuses(answers), error(answers[0])[0]) == ([400], -2035)
            s.sim.set_faults(error_rate=1.0)
            status, answers = await s.batch(post_order("R1"))
            assert (status, statuses(answers)) == (202, [500])
            s.sim.set_faults(error_rate=0.0, outage_until=datetime.now(UTC) + timedelta(hours=1))
            assert (await s.batch(post_order("R1")))[0] == 503
            assert s.sim.documents == []

    run(scenario)


@pytest.mark.timeout(20)
def test_sub_requests_of_one_batch_never_fight_over_an_item_other_requests_do() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(conflict_window_ms=10_000)
            _, answers = await s.batch(post_order("R1"), post_order("R2"), post_order("R3"))
            assert statuses(answers) == [201, 201, 201]  # one session, one after another
            _, answers = await s.batch(post_order("R4"))
            assert error(answers[0])[0] == -2039  # another request, within the window

    run(scenario)


@pytest.mark.timeout(20)
def test_a_draft_stops_the_batch_as_an_error_unless_return_no_content_is_preferred() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.sales.update_customer("C1", approval=True)
            _, answers = await s.batch(post_order("R1"), post_order("R2"))
            assert (statuses(answers), error(answers[0])[0]) == ([400], -2028)
            quiet = {"Prefer": "return-no-content"}
            _, answers = await s.batch(post_order("R3", **quiet), post_order("R4", **quiet))
            assert statuses(answers) == [204, 204]
            assert [a.headers["Location"] for a in answers] == [
                "/b1s/v1/Drafts(2)", "/b1s/v1/Drafts(3)",
            ]  # fmt: skip
            assert [d.kind for d in s.sim.documents] == ["draft", "draft", "draft"]

    run(scenario)


@pytest.mark.timeout(20)
def test_an_answer_held_back_after_apply_holds_back_the_whole_batch() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(timeout_after_apply_ms=400)
            loop = asyncio.get_running_loop()
            started = loop.time()
            _, answers = await s.batch(post_order("R1"), post_order("R2"))
            assert statuses(answers) == [201, 201]
            assert loop.time() - started >= 0.8  # each sub request's answer, one after another

    run(scenario)
