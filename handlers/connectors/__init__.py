"""Adapters to the systems of record: each translates its protocol's errors at this edge.

``ratelimit``: the async token bucket shared by every task of the process.
``lwa``: Login with Amazon (refresh-token grant) and the SP-API error types.
``spapi``: Amazon SP-API Orders v0 (``confirmShipment``, ``getOrder``).
``b1``, ``b1_errors``: SAP Business One Service Layer (sessions, master data, stock documents).
``b1_port``: B1 filling the ERP port of ``handlers.erp`` (SAP ECC will fill the same port).
"""
