-- stock.transferred: a staged movement with a destination is a transfer (staged in its source
-- warehouse's window); postings of kind 'transfer' carry such lines to the ERP as one transfer.
ALTER TABLE skuflow_stock_lines ADD COLUMN IF NOT EXISTS to_warehouse_code TEXT;
ALTER TABLE skuflow_postings DROP CONSTRAINT IF EXISTS skuflow_postings_kind_check;
ALTER TABLE skuflow_postings ADD CONSTRAINT skuflow_postings_kind_check
    CHECK (kind IN ('entry', 'exit', 'settled', 'transfer'));
-- Transfers not posted yet, by destination and item: a later movement of the item at the
-- destination waits for them (a small index: only open transfer lines are in it).
CREATE INDEX IF NOT EXISTS skuflow_stock_lines_open_transfers
    ON skuflow_stock_lines (to_warehouse_code, item_code, seq)
    WHERE to_warehouse_code IS NOT NULL AND state IN ('staged', 'batched');
