"""impp-conformance: a security conformance suite for instant messaging and presence (IMPP) implementations."""

__version__ = "0.1.0"
