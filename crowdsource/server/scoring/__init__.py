"""Scoring: pure validation, alignment and metrics, and the pools that run it."""
