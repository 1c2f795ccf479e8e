"""Static membership pieces that need no broker: instance ids per class, the fenced error
aiokafka copies, and the wire versions of the heartbeat and leave requests."""

from __future__ import annotations

import copy

import pytest

from config.settings import KafkaSettings, SettingsError
from worker.kafka import group_instance_id
from worker.membership import InstanceFenced, StaticHeartbeatRequest, StaticLeaveGroupRequest


@pytest.mark.timeout(5)
def test_each_class_joins_with_its_own_instance_id_and_none_without_the_setting() -> None:
    static = KafkaSettings(group_instance_id="skuflow-urgent-7d9f-x2x4q")
    assert group_instance_id(static, "urgent") == "skuflow-urgent-7d9f-x2x4q-urgent"
    assert group_instance_id(static, "normal") == "skuflow-urgent-7d9f-x2x4q-normal"
    assert group_instance_id(KafkaSettings(), "urgent") is None


@pytest.mark.timeout(5)
def test_an_instance_id_leaves_room_for_the_class_within_kafkas_249_characters() -> None:
    assert len(group_instance_id(KafkaSettings(group_instance_id="p" * 242), "urgent") or "") == 249
    with pytest.raises(SettingsError, match=r"^kafka\.group_instance_id: "):
        KafkaSettings(group_instance_id="p" * 243)


@pytest.mark.timeout(5)
def test_the_fenced_error_survives_aiokafkas_copy_and_names_group_and_id() -> None:
    # aiokafka hands a coordinator error to the consumer's caller as copy.copy(exc).
    error = copy.copy(InstanceFenced("skuflow", "pod-0-normal"))
    assert (error.group, error.instance_id) == ("skuflow", "pod-0-normal")
    assert str(error) == (
        "consumer group 'skuflow': group instance id 'pod-0-normal' was taken by another "
        "member (FENCED_INSTANCE_ID); two processes must not share one id"
    )


@pytest.mark.timeout(5)
def test_the_heartbeat_carries_the_instance_id_where_the_broker_reads_it() -> None:
    request = StaticHeartbeatRequest("skuflow", 7, "pod-0-normal-abc", "pod-0-normal")
    v3 = request.prepare({12: (0, 4)})  # Kafka 4.3.1 offers Heartbeat v0-v4
    assert v3.API_VERSION == 3
    assert v3.to_object() == {
        "group": "skuflow",
        "generation_id": 7,
        "member_id": "pod-0-normal-abc",
        "group_instance_id": "pod-0-normal",
    }
    old = request.prepare({12: (0, 2)})  # a broker before 2.3: no instance id on the wire
    assert old.API_VERSION == 1
    assert "group_instance_id" not in old.to_object()


@pytest.mark.timeout(5)
def test_the_leave_names_the_member_by_id_and_instance_id() -> None:
    request = StaticLeaveGroupRequest("skuflow", "pod-0-normal-abc", "pod-0-normal")
    v3 = request.prepare({13: (0, 5)})
    assert v3.API_VERSION == 3
    assert v3.to_object() == {
        "group": "skuflow",
        "members": [{"member_id": "pod-0-normal-abc", "group_instance_id": "pod-0-normal"}],
    }
