"""What every flow shares: the event base (``events``), the router and family registration
(``router``, ``flow``), ERP master data with its cache (``masterdata``) and the domain's
instruments (``telemetry``). Imports nothing from a flow or a connector."""
