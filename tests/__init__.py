"""Tests mirror the wings of harness/ (tests/<wing>/); shared builders: fakes.py (finished runs
without training), training.py (a tiny network and its trainer)."""
