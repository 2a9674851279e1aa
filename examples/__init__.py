"""Runnable examples: the OCEN sample flow end to end (``python -m examples.sample_flow``)."""
