"""Helpers shared by the tests and the benchmark: project copies, the object tracker, waiting."""
