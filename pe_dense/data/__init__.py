"""Data helpers: image reading/preprocessing and the bundled demo data."""
