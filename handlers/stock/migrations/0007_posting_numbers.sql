-- ERP document numbers beyond 32 bits: SAP ECC material documents are ten digits (4900000123)
-- and IDoc numbers sixteen.
ALTER TABLE skuflow_postings ALTER COLUMN doc_entry TYPE BIGINT, ALTER COLUMN doc_num TYPE BIGINT;
