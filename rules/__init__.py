"""Bottleneck rules over smprof's tables, and the training-script side that feeds them."""
