"""Adapters to the external systems, one package per system; each translates its protocol's
errors at this edge and implements the ports a flow depends on.

``b1``: SAP Business One Service Layer (sessions, master data, stock documents; ``port``
fills the ERP port of :mod:`handlers.ports.erp`). ``spapi``: Amazon SP-API (Login with Amazon,
Orders v0 ``confirmShipment``/``getOrder``). Shared by every connector: ``ratelimit`` (the
async token bucket of a process) and ``shared_bucket`` (one bucket across replicas, in
PostgreSQL; its table is ``migrations/0004_rate_buckets.sql``). Connectors never import a flow.
"""
