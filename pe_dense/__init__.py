"""pe_dense: dense prediction on PE-Spatial."""
