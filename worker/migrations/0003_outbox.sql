-- Events skuflow publishes as the effect of a database change (order.released, order.held,
-- captured orders): written in the transaction of that change, sent to Kafka by the relay
-- in id order, deleted once Kafka acknowledged them.
CREATE TABLE IF NOT EXISTS skuflow_outbox (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    key bytea,
    value bytea NOT NULL,
    headers jsonb NOT NULL DEFAULT '[]',
    event_id text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
