"""Bias detection on the Healthcare tier: counterfactual probes and their statistics."""
