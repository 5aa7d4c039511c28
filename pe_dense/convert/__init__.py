"""Checkpoint converters: PE formats and patch size (pe.py), released detectors (detectron2.py, deta.py)."""
