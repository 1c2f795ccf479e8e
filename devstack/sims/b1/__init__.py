"""SAP Business One Service Layer simulator: ``model`` (the company database), ``sales`` and
``sales_model`` (customers, orders, drafts and the sales documents based on them), ``server``."""
