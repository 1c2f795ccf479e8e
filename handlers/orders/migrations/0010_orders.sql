-- The order-to-cash ledger: one row per marketplace order (its ERP sales order, its holds,
-- what was published to the warehouse), and one row per ERP document based on it
-- (deliveries, invoices, returns, credit notes). Each row keeps the message that asked for
-- it (topic/partition/offset/key/payload), so a refusal becomes an exception record of it.
CREATE TABLE IF NOT EXISTS skuflow_orders (
    channel text NOT NULL,
    order_id text NOT NULL,
    marketplace_id text NOT NULL,
    revision timestamptz NOT NULL,          -- the marketplace revision applied last
    -- received: to create in the ERP; creating: sent (the answer may be lost: look it up
    -- first); in_erp: created, not pickable yet; released: published to the warehouse;
    -- held: on hold after release (order.held published); cancelling: to cancel in the ERP;
    -- cancelled; closed (delivered in full, or closed in the ERP); failed (an exception)
    state text NOT NULL,
    marketplace_status text NOT NULL,
    fulfilled_by text NOT NULL,
    location text,                          -- the shipping location (mappings.warehouses)
    ship_by timestamptz,
    sales_order jsonb NOT NULL,             -- the ERP sales order to create (SalesOrder)
    lines jsonb NOT NULL,                   -- [{order_item_id, sku, quantity}] for the warehouse
    erp_ref jsonb,                          -- SalesOrderRef once created
    holds text[] NOT NULL DEFAULT '{}',
    releases integer NOT NULL DEFAULT 0,    -- order.released published so far
    helds integer NOT NULL DEFAULT 0,       -- order.held published so far
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    exception_id bigint,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    key bytea,
    payload bytea NOT NULL,
    event_id text NOT NULL,
    traceparent text,
    received_at timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, order_id)
);
CREATE INDEX IF NOT EXISTS skuflow_orders_to_write ON skuflow_orders (next_attempt_at)
    WHERE state IN ('received', 'creating', 'cancelling');
CREATE INDEX IF NOT EXISTS skuflow_orders_watched ON skuflow_orders (updated_at)
    WHERE state IN ('in_erp', 'released', 'held');

CREATE TABLE IF NOT EXISTS skuflow_order_documents (
    id bigserial PRIMARY KEY,
    channel text NOT NULL,
    order_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('delivery', 'invoice', 'return', 'credit_note')),
    source_ref text NOT NULL,               -- the package / the return's reference / the base
    -- staged: to post; posting: sent (look it up before sending again); posted; failed
    state text NOT NULL DEFAULT 'staged',
    based_on bigint REFERENCES skuflow_order_documents (id),
    lines jsonb NOT NULL,
    location text,
    doc_entry bigint,
    doc_num bigint,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    exception_id bigint,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    key bytea,
    payload bytea NOT NULL,
    event_id text NOT NULL,
    traceparent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    posted_at timestamptz,
    UNIQUE (channel, order_id, kind, source_ref)
);
CREATE INDEX IF NOT EXISTS skuflow_order_documents_to_post ON skuflow_order_documents
    (next_attempt_at) WHERE state IN ('staged', 'posting');
