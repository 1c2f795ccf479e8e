"""Static group membership (KIP-345) on aiokafka 0.14: the two pieces aiokafka leaves out.

With ``group_instance_id`` set, aiokafka sends the instance id in JoinGroup (v5) and SyncGroup
(v3), and a restarted member with the same id gets its partitions back at once, without a
rebalance (0.2 s instead of the dead member's whole session timeout, measured on Kafka 4.3.1).
But, read in aiokafka 0.14's ``consumer/group_coordinator.py`` and ``protocol/group.py`` and
verified on the broker:

* **A duplicate is never told it is fenced.** aiokafka's Heartbeat is v1, which has no
  ``group_instance_id`` field. When a second process joins with the same instance id the broker
  hands it the id; the first process's next heartbeat names only its old member id and is
  answered ``UNKNOWN_MEMBER_ID``, so it resets and rejoins as that instance id, taking it back.
  The two take the id from each other on every heartbeat, indefinitely, and **both consume the
  same partitions** (a two-consumer experiment on Kafka 4.3.1 delivered every record to both).
  Sent as Heartbeat v3 with the instance id, the broker answers the displaced member
  ``FENCED_INSTANCE_ID`` (82), as the Java client's classic protocol expects. aiokafka does not
  know code 82 (it becomes ``UnknownError``), so :func:`install` turns any coordinator response
  carrying it into :class:`InstanceFenced`, which the consumer raises from ``getmany`` and the
  worker turns into a clean, non-zero exit.
* **A static member cannot leave.** aiokafka skips LeaveGroup for a static member (KIP-345: a
  restart within the session timeout keeps the assignment), and its LeaveGroup (v1) could not
  name an instance anyway. A pod that goes away for good (a Deployment's rollout or scale-down)
  would leave its partitions unconsumed until its session expires. A consumer built with
  ``leave_group_on_close`` (:class:`GroupConsumer`) sends LeaveGroup v3 (members with their
  instance id) when it is stopped, so a drained static member hands its partitions over at
  once, exactly as a dynamic one does; a crashed one (SIGKILL, OOM) sends nothing and gets them
  back when it returns.

Both are installed idempotently when this module is imported (like :mod:`worker.kafka`'s
closed-transport guard); remove them once aiokafka sends the instance id itself.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.group import (
    HeartbeatRequest,
    HeartbeatRequest_v0,
    HeartbeatRequest_v1,
)
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

from worker.errors import SkuflowError

log = logging.getLogger("skuflow.kafka")

#: The broker's FENCED_INSTANCE_ID error code (KIP-345).
FENCED_INSTANCE_ID = 82

_PATCHED = "__skuflow_static_membership__"
_LEAVE = "_skuflow_leave_group_on_close"
_FENCED = "_skuflow_fenced"


class InstanceFenced(SkuflowError):
    """Another process joined the consumer group with this process's group instance id.

    Kafka gives the id to the newest member: this one has lost its partitions and must stop.
    """

    def __init__(self, group: str, instance_id: str) -> None:
        super().__init__(group, instance_id)
        self.group = group
        self.instance_id = instance_id

    def __str__(self) -> str:
        return (
            f"consumer group {self.group!r}: group instance id {self.instance_id!r} was taken "
            "by another member (FENCED_INSTANCE_ID); two processes must not share one id"
        )


# --- the wire formats aiokafka 0.14 lacks ---------------------------------------------------------


class _HeartbeatResponse_v3(Response):  # type: ignore[misc]  # untyped base class
    API_KEY = 12
    API_VERSION = 3
    SCHEMA = Schema(("throttle_time_ms", Int32), ("error_code", Int16))


class _HeartbeatRequest_v3(RequestStruct):  # type: ignore[misc]
    API_KEY = 12
    API_VERSION = 3
    RESPONSE_TYPE = _HeartbeatResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("generation_id", Int32),
        ("member_id", String("utf-8")),
        ("group_instance_id", String("utf-8")),
    )


class StaticHeartbeatRequest(
    Request[HeartbeatRequest_v0 | HeartbeatRequest_v1 | _HeartbeatRequest_v3]  # type: ignore[misc]
):
    """Heartbeat with the group instance id (v3, Kafka 2.3+); v0/v1 on older brokers."""

    API_KEY = 12

    def __init__(self, group: str, generation_id: int, member_id: str, instance_id: str) -> None:
        self._fields = (group, generation_id, member_id)
        self._instance_id = instance_id

    def build(self, request_struct_class: Any) -> Any:
        if request_struct_class.API_VERSION >= 3:
            return request_struct_class(*self._fields, self._instance_id)
        return request_struct_class(*self._fields)


class _LeaveGroupResponse_v3(Response):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")),
                ("group_instance_id", String("utf-8")),
                ("error_code", Int16),
            ),
        ),
    )


class _LeaveGroupRequest_v3(RequestStruct):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponse_v3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class StaticLeaveGroupRequest(Request[_LeaveGroupRequest_v3]):  # type: ignore[misc]
    """LeaveGroup naming a member by member id and group instance id (v3, Kafka 2.4+)."""

    API_KEY = 13

    def __init__(self, group: str, member_id: str, instance_id: str) -> None:
        self._group = group
        self._member = (member_id, instance_id)

    def build(self, request_struct_class: Any) -> Any:
        return request_struct_class(self._group, [self._member])


# --- the coordinator's side -----------------------------------------------------------------------


def _fenced(coordinator: Any) -> InstanceFenced:
    setattr(coordinator, _FENCED, True)
    return InstanceFenced(coordinator.group_id, coordinator._group_instance_id)


def _send_req(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def send_req(coordinator: Any, request: Any) -> Any:
        instance_id = coordinator._group_instance_id
        if instance_id is not None and isinstance(request, HeartbeatRequest):
            request = StaticHeartbeatRequest(
                coordinator.group_id, coordinator.generation, coordinator.member_id, instance_id
            )
        response = await original(coordinator, request)
        if getattr(response, "error_code", None) == FENCED_INSTANCE_ID:
            # Not a KafkaError: aiokafka retries those. Raised in the heartbeat task or the
            # join, it reaches the caller of getmany() (the coordinator's pending error).
            raise _fenced(coordinator)
        return response

    return send_req


def _maybe_leave_group(original: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def maybe_leave_group(coordinator: Any) -> None:
        instance_id = coordinator._group_instance_id
        wanted = getattr(coordinator, _LEAVE, False) and not getattr(coordinator, _FENCED, False)
        if instance_id is None or not wanted or coordinator.generation <= 0:
            await original(coordinator)  # dynamic: aiokafka's LeaveGroup; static: nothing
            return
        request = StaticLeaveGroupRequest(coordinator.group_id, coordinator.member_id, instance_id)
        try:
            response = await coordinator._send_req(request)
        except Exception as exc:  # best effort, like aiokafka's own leave
            log.warning(
                "LeaveGroup failed; the group reassigns this member's partitions when its "
                "session times out",
                extra={"group": coordinator.group_id, "error": repr(exc)},
            )
        else:
            codes = [response.error_code, *(member[2] for member in response.members)]
            if any(codes):
                log.warning(
                    "LeaveGroup refused",
                    extra={"group": coordinator.group_id, "error_codes": codes},
                )
            else:
                log.info(
                    "left the consumer group (static member)",
                    extra={"group": coordinator.group_id, "group_instance_id": instance_id},
                )
        coordinator.reset_generation()

    return maybe_leave_group


def install() -> None:
    """Patch aiokafka's group coordinator (idempotent): instance id in heartbeats, fencing
    surfaced as :class:`InstanceFenced`, and LeaveGroup v3 for static members that ask."""
    if getattr(GroupCoordinator, _PATCHED, False):
        return
    GroupCoordinator._send_req = _send_req(GroupCoordinator._send_req)
    GroupCoordinator._maybe_leave_group = _maybe_leave_group(GroupCoordinator._maybe_leave_group)
    setattr(GroupCoordinator, _PATCHED, True)


install()


class GroupConsumer(AIOKafkaConsumer):  # type: ignore[misc]  # untyped base class
    """An ``AIOKafkaConsumer`` whose static membership may leave the group when stopped."""

    def __init__(self, *, leave_group_on_close: bool = True, **options: Any) -> None:
        super().__init__(**options)
        self._leave_group_on_close = leave_group_on_close

    async def start(self) -> None:
        await super().start()
        # The coordinator exists from start() on; aiokafka reads nothing else of ours.
        setattr(self._coordinator, _LEAVE, self._leave_group_on_close)


__all__ = ["FENCED_INSTANCE_ID", "GroupConsumer", "InstanceFenced", "install"]
