-- Engine state: exception records and the durable park (retry) store.
CREATE TABLE IF NOT EXISTS skuflow_exceptions (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT        NOT NULL,
    reason        TEXT        NOT NULL,
    topic         TEXT        NOT NULL,
    partition     INTEGER     NOT NULL,
    "offset"      BIGINT      NOT NULL,
    key           BYTEA,
    event_id      TEXT,
    sku           TEXT,
    payload       BYTEA       NOT NULL,
    headers       JSONB       NOT NULL DEFAULT '[]'::jsonb,
    first_seen    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen     TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts      INTEGER     NOT NULL DEFAULT 1,
    status        TEXT        NOT NULL DEFAULT 'open'
                  CHECK (status IN ('open', 'retrying', 'resolved')),
    resolution    TEXT,
    trace_id      TEXT,
    UNIQUE (topic, partition, "offset")
);
CREATE INDEX IF NOT EXISTS skuflow_exceptions_status ON skuflow_exceptions (status, id);
CREATE INDEX IF NOT EXISTS skuflow_exceptions_event ON skuflow_exceptions (event_id);

CREATE TABLE IF NOT EXISTS skuflow_parked (
    id              BIGSERIAL PRIMARY KEY,
    topic           TEXT        NOT NULL,
    partition       INTEGER     NOT NULL,
    "offset"        BIGINT      NOT NULL,
    key             BYTEA,
    ordering_key    TEXT,
    event_id        TEXT,
    payload         BYTEA       NOT NULL,
    headers         JSONB       NOT NULL DEFAULT '[]'::jsonb,
    reason          TEXT        NOT NULL,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    parked_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    next_attempt_at TIMESTAMPTZ NOT NULL,
    deadline        TIMESTAMPTZ,
    claimed_until   TIMESTAMPTZ,
    UNIQUE (topic, partition, "offset")
);
CREATE INDEX IF NOT EXISTS skuflow_parked_due ON skuflow_parked (next_attempt_at);
