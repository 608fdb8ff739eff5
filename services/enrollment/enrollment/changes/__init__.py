"""The change feed: what changed since a cursor, deletions included, for apps that keep a copy of rosters."""
