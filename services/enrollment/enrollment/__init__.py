"""The enrollment service: admission, school years and classes, rosters."""
