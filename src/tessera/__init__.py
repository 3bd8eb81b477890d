"""Tessera — an open-source Customer Data Platform with marketing automation."""

__version__ = "0.1.0"
