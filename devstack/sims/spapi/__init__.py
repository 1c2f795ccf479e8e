"""Amazon SP-API + Login with Amazon simulator: ``model`` (orders, quotas), ``server``."""
