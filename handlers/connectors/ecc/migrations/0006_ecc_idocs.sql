-- SAP ECC: every goods-movement IDoc skuflow sends, tracked to its application status. The id
-- is the sender's DOCNUM; ``materials`` (with the plant) is what it touches, so no second IDoc
-- for one material in one plant is sent while one is still in flight, across replicas.
CREATE TABLE IF NOT EXISTS skuflow_ecc_idocs (
    docnum          BIGSERIAL   PRIMARY KEY,               -- the sender's IDoc number (DOCNUM)
    key             TEXT        NOT NULL,                  -- the posting (slice) key: REF_DOC_NO
    plant           TEXT        NOT NULL,
    materials       TEXT[]      NOT NULL,
    state           TEXT        NOT NULL DEFAULT 'sending'
                    CHECK (state IN ('sending', 'stored', 'posted', 'failed', 'lost')),
    receiver_docnum TEXT,                                  -- ECC's IDoc number (EDIDC-DOCNUM)
    status          TEXT,                                  -- ECC's last IDoc status (53, 51, ...)
    mat_doc         TEXT,                                  -- MKPF-MBLNR once posted
    mat_year        TEXT,                                  -- MKPF-MJAHR
    message         TEXT,                                  -- the last status message
    sent_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS skuflow_ecc_idocs_key ON skuflow_ecc_idocs (key);
CREATE INDEX IF NOT EXISTS skuflow_ecc_idocs_open ON skuflow_ecc_idocs (plant)
    WHERE state IN ('sending', 'stored');
