"""The client cases: the IUT is a client, driven through its shim (docs/shim.md); the harness is its service."""
