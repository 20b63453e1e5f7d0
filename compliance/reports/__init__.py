"""Compliance reports: collected, signed, rendered (docs/reports.md)."""
