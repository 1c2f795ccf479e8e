-- Stock movements: staged lines (durable before their offsets commit), postings (summarised ERP
-- documents) and the link between them (every document line traceable to its sources).
CREATE TABLE IF NOT EXISTS skuflow_postings (
    id              BIGSERIAL PRIMARY KEY,
    key             TEXT        NOT NULL UNIQUE,          -- the ERP document's idempotency key
    warehouse_code  TEXT        NOT NULL,
    kind            TEXT        NOT NULL CHECK (kind IN ('entry', 'exit', 'settled')),
    status          TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'posted', 'settled', 'failed')),
    lines           JSONB       NOT NULL DEFAULT '[]'::jsonb,
    doc_entry       INTEGER,                              -- the (first) ERP document
    doc_num         INTEGER,
    documents       JSONB       NOT NULL DEFAULT '[]'::jsonb, -- every ERP document: key, lines
    slices          JSONB,                                -- bisection still to do: [[start, end]]
    rejected_lines  JSONB       NOT NULL DEFAULT '[]'::jsonb, -- line indexes turned exceptions
    attempts        INTEGER     NOT NULL DEFAULT 0,
    ambiguous       BOOLEAN     NOT NULL DEFAULT false,   -- a write may have reached the ERP
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    posted_at       TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS skuflow_postings_open ON skuflow_postings (warehouse_code, id)
    WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS skuflow_stock_lines (
    seq             BIGSERIAL   NOT NULL UNIQUE,          -- staging order
    event_id        TEXT        PRIMARY KEY,              -- redelivery is harmless
    sku             TEXT        NOT NULL,
    location        TEXT        NOT NULL,
    item_code       TEXT        NOT NULL,
    warehouse_code  TEXT        NOT NULL,
    quantity        NUMERIC     NOT NULL,
    batch_number    TEXT,
    serial_numbers  TEXT[]      NOT NULL DEFAULT '{}',
    reason          TEXT        NOT NULL,
    source          TEXT        NOT NULL,
    source_ref      TEXT        NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    topic           TEXT        NOT NULL,
    partition       INTEGER     NOT NULL,
    "offset"        BIGINT      NOT NULL,
    key             BYTEA,
    payload         BYTEA       NOT NULL,
    staged_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    posting_id      BIGINT REFERENCES skuflow_postings (id),
    line_no         INTEGER,                              -- the document line it went into
    state           TEXT        NOT NULL DEFAULT 'staged'
                    CHECK (state IN ('staged', 'batched', 'posted', 'settled', 'rejected'))
);
CREATE INDEX IF NOT EXISTS skuflow_stock_lines_staged ON skuflow_stock_lines (warehouse_code, seq)
    WHERE state = 'staged';
CREATE INDEX IF NOT EXISTS skuflow_stock_lines_posting ON skuflow_stock_lines (posting_id);
