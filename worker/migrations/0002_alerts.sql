-- Deadline alerts (deadline_at_risk, deadline_missed) are exception records beside any failure
-- of the same message: one record per message *and kind*.
ALTER TABLE skuflow_exceptions DROP CONSTRAINT IF EXISTS skuflow_exceptions_topic_partition_offset_key;
ALTER TABLE skuflow_exceptions
    ADD CONSTRAINT skuflow_exceptions_message_kind UNIQUE (topic, partition, "offset", kind);
