"""The schema audit: the contract (what the code writes) against the live catalog."""
