"""Amazon Selling Partner API: ``lwa`` (Login with Amazon refresh-token grant, the SP-API error
types), ``client`` (Orders v0 ``confirmShipment``/``getOrder``, throttling, the deadline
pacer of confirmShipment), ``orders`` (Orders v2026-01-01 ``searchOrders``/``getOrder``)."""
