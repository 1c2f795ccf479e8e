"""SAP ECC simulator: ``idoc`` (IDoc-XML, SOAP and ALEAUD01 on the wire), ``model`` (master
data, stock and BAPI_GOODSMVT_CREATE semantics), ``rfc`` (RFC_READ_TABLE over SOAP-RFC),
``tables`` (the tables it reads), ``records`` (stored IDocs, applied movements, deliveries),
``sales`` (customers, ORDERS05 into sales orders, holds), ``shipping`` (deliveries and their
goods issue, invoices, returns, credit memos, rejection), ``sales_rfc`` (the customer's wrapper
function modules), ``sales_tables`` (the SD tables), ``controls`` (``/_sim`` endpoints),
``server`` (the ICF services, asynchronous IDoc application, ALE audit, fault knobs)."""
