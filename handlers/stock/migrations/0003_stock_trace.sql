-- The trace context of the process span that staged a line (W3C traceparent, sampled spans
-- only), so the posting span that carries the line to the ERP can link back to it.
ALTER TABLE skuflow_stock_lines ADD COLUMN IF NOT EXISTS traceparent TEXT;
