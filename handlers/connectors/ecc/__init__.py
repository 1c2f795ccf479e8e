"""SAP ECC over HTTP only (ICF services): ``idoc`` (MBGMCR03 goods-movement IDoc-XML out,
ALEAUD01 audit IDocs in)."""
