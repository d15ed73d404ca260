"""The contract files, installed with the code so an installed copy finds them (importlib.resources)."""
