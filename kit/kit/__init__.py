"""The shared runtime of the platform services."""
