"""SAP Business One Service Layer simulator: ``model`` (the company database), ``server``."""
