"""Adapters own all I/O. Each accepts an injected client so tests can hand it a fake or moto."""
