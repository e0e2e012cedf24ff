"""Typer commands; each stays thin and calls the core engine."""
