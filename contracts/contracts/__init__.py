"""Versioned contracts shared by the platform and its vendors."""
