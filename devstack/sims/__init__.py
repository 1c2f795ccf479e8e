"""Simulators of the external systems, one package per system (mirroring
``handlers/connectors/``), each speaking the vendor's wire protocol over HTTP with its
inconvenient behaviour: ``b1`` (SAP B1 Service Layer), ``spapi`` (Amazon SP-API and LWA);
``http`` is their shared server scaffolding."""
