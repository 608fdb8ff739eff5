"""The enrollment service's local projection of identity's directory: organisations, people, roles, guardians."""
