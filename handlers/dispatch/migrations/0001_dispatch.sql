-- The shipment-confirmation ledger: one row per (order, package). A confirmed row means Amazon
-- accepted the confirmation; any later event for the same package is a duplicate.
CREATE TABLE IF NOT EXISTS skuflow_shipments (
    order_id             TEXT        NOT NULL,
    package_reference_id TEXT        NOT NULL,
    channel              TEXT        NOT NULL,
    marketplace_id       TEXT        NOT NULL,
    event_id             TEXT        NOT NULL,
    tracking_number      TEXT        NOT NULL,
    carrier_code         TEXT        NOT NULL,
    ship_by              TIMESTAMPTZ NOT NULL,
    status               TEXT        NOT NULL
                         CHECK (status IN ('sending', 'retrying', 'confirmed', 'rejected')),
    attempts             INTEGER     NOT NULL DEFAULT 0,
    first_attempt_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_attempt_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    confirmed_at         TIMESTAMPTZ,
    request_id           TEXT,
    last_error           TEXT,
    PRIMARY KEY (order_id, package_reference_id)
);
CREATE INDEX IF NOT EXISTS skuflow_shipments_status ON skuflow_shipments (status, ship_by);
