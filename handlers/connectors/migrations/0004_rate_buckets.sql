-- Token buckets shared by every replica: one marketplace plan (e.g. confirmShipment's 2/s) is
-- drawn from by all of them, instead of each pacing itself at the full rate.
CREATE TABLE IF NOT EXISTS skuflow_rate_buckets (
    name    TEXT             PRIMARY KEY,  -- operation + a hash naming the seller account
    tokens  DOUBLE PRECISION NOT NULL,     -- below zero: the debt of reservations in flight
    stamp   TIMESTAMPTZ      NOT NULL      -- when ``tokens`` was last brought up to date
);
