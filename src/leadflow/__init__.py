"""Leadflow: capture, score, route and report on marketing campaign leads."""

__version__ = "0.1.0"
