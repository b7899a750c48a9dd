"""Bottleneck rules over stepscope's tables, and the training-script side that feeds them."""
