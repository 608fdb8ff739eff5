"""People: residents, students, staff and guardians; identifier validation and masking."""
