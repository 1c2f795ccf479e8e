-- B1 -2035 ("This entry already exists"), a collision rather than a bad line: how many times in
-- a row the document in flight was answered so (bounded by stock.collision_retries), and, for
-- movements refused together once that bound is reached, the one exception record standing for
-- all of them (retrying that record stages every one of them again).
ALTER TABLE skuflow_postings ADD COLUMN IF NOT EXISTS collisions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE skuflow_stock_lines ADD COLUMN IF NOT EXISTS exception_id BIGINT;
CREATE INDEX IF NOT EXISTS skuflow_stock_lines_exception ON skuflow_stock_lines (exception_id)
    WHERE exception_id IS NOT NULL;
