"""The public OAuth gateway; built in its own issue."""
