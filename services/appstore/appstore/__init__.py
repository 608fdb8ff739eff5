"""App store service (应用超市)."""
