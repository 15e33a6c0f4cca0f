"""Integrations with other training frameworks (optional extras): ``lightning``."""
