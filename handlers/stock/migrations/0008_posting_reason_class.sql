-- The reason class of a posting's movements (SAP ECC: the movement types it posts with). An
-- ERP that books every reason alike leaves it empty; movements of different classes are never
-- netted into one document.
ALTER TABLE skuflow_postings ADD COLUMN IF NOT EXISTS reason_class TEXT NOT NULL DEFAULT '';
