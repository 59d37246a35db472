"""Operators of the inference pipeline: one module per task family."""
