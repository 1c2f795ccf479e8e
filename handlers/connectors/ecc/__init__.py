"""SAP ECC over HTTP only (ICF services): ``idoc`` (MBGMCR03 goods-movement IDoc-XML out,
ALEAUD01 audit IDocs in), ``orders`` (ORDERS05 sales orders out), ``rfc`` and ``client`` (SOAP-RFC:
RFC_READ_TABLE and function modules), ``reads`` (table reads and IDoc status read back),
``tracker`` (``skuflow_ecc_idocs``: every IDoc sent), ``port`` (the ERP port: master data, stock
documents) and ``sales`` (its sales orders and the documents that follow them)."""
