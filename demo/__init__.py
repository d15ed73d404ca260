"""The demo data (legacy schema, legacy rows, catalog rows), installed with the code so `bulkgen demo` runs from any folder."""
