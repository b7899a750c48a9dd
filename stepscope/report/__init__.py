"""The bottleneck report: one model (``model.py``) rendered by one module per format."""
