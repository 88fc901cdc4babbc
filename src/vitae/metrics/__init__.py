"""Evaluation metrics: log-likelihood bounds and the disentanglement scores."""
