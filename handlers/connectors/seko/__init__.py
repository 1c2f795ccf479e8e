"""Seko Logistics iHub (3PL): ``client`` (sales orders, cancellations, products, stock and the
retrieve APIs over iHub REST), ``rules`` (Seko's product-code and order rules, checked before
anything is sent), ``protocol`` (the wire shapes and every assumption about them)."""
