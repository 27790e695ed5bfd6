"""Executors: what actually runs a tool call (simulated, python, http)."""
