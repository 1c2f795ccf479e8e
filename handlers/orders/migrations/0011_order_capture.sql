-- Order capture (handlers.orders.capture): per seller account, the searchOrders cursor and
-- the leader's fencing epoch; per order, the last revision decided on; the outbox of events,
-- written in the transaction that advances the cursor and deleted once Kafka acknowledged
-- them.
CREATE TABLE IF NOT EXISTS skuflow_order_capture (
    seller text PRIMARY KEY,
    reached timestamptz NOT NULL,           -- every order updated up to here has been read
    window_after timestamptz,               -- the search in progress (lastUpdatedAfter,
    window_before timestamptz,              -- lastUpdatedBefore) and its next page
    page_token text,                        -- (searchOrders' pagination.nextToken)
    epoch bigint NOT NULL DEFAULT 0,        -- +1 per leadership: a deposed leader's writes fail
    leader text,                            -- who leads (host:pid), for operators
    led_since timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((window_after IS NULL) = (window_before IS NULL)),
    CHECK (page_token IS NULL OR window_after IS NOT NULL)
);

CREATE TABLE IF NOT EXISTS skuflow_order_capture_revisions (
    seller text NOT NULL,
    order_id text NOT NULL,
    revision timestamptz NOT NULL,          -- the order's lastUpdatedTime decided on last
    status text NOT NULL,                   -- its fulfillmentStatus then
    last_event text,                        -- the last event type published (NULL: none)
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seller, order_id)
);

CREATE TABLE IF NOT EXISTS skuflow_order_outbox (
    seq bigserial PRIMARY KEY,
    seller text NOT NULL,
    event_id text NOT NULL UNIQUE,          -- amazon-order-<order id>-<revision in µs>
    order_id text NOT NULL,                 -- the Kafka key
    event_type text NOT NULL,
    payload bytea NOT NULL,                 -- the event's JSON, as published
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS skuflow_order_outbox_by_seller ON skuflow_order_outbox (seller, seq);
