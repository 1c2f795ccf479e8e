"""SAP Business One Service Layer: ``client`` (sessions, OData calls, master data, stock
documents), ``errors`` (B1's answers → typed errors, secrets redacted), ``port`` (B1 filling
the ERP port's ``master data`` and ``stock documents`` capabilities)."""
