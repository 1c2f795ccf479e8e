"""Contract events as producers send them, for tests that need a valid one (the builders live in
``devstack.events``, shared with the benchmarks)."""

from __future__ import annotations

from devstack.events import MARKETPLACE, dispatch_payload

__all__ = ["MARKETPLACE", "dispatch_payload"]
