"""Adapters to the systems of record: each translates its protocol's errors at this edge.

``ratelimit``: the async token bucket shared by every task of the process.
``spapi``: Amazon SP-API (LWA refresh-token grant, Orders v0 ``confirmShipment``/``getOrder``).
"""
