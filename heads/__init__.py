"""Task heads (installed as pe_dense.heads)."""
