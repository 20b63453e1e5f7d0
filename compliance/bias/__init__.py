"""Bias detection: counterfactual probes and passive monitoring (docs/bias.md)."""
