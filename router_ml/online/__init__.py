"""The online loop: dispatch to the routed specialist, the outcome log, retraining from it, drift."""
