"""Driving a client under test through a shim (issue 6): the contract every shim follows, and the runner."""
