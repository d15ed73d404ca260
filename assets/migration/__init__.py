"""The constraint migration: plan from the audit, safe execution, a ledger, and the asset over them."""
