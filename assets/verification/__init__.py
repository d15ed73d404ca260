"""Verification: the queries that prove a generation run left the database sound, as asset checks."""
