"""Bench-only Django app: the create benchmark's floor (a bare DRF view inserting one row)."""
