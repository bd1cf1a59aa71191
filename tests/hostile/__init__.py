"""Hostile children for tests: small stdlib programs that do what a misbehaving server does."""
