"""Helpers shared by tests: clip generators and real server processes."""
