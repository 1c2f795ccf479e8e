"""A protocol-faithful Seko Logistics iHub (3PL) simulator: see :mod:`devstack.sims.seko.server`."""
