"""Rows of the permission matrix by area (tests/support/permission_matrix.py joins them)."""
