"""The ports: what flows need from a kind of external system, whatever the vendor. A connector
implements a port's protocols; a flow depends on the port, never on a connector's internals."""
