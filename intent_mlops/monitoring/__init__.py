"""Watching the champion at work: the prediction log, its reference, drift signals."""
