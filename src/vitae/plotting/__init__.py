"""Figures: a trained run's pictures, and diagnostic plots of the transformations and data."""
