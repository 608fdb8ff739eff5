"""How an app knows a user: the pairwise pseudonym identity issues in ID tokens, derived here the same way for LTI.

The app store registers every app's OAuth client with the sector identifier below, so identity's pairwise ``sub``
for the app and the LTI ``sub`` (and the NRPS ``user_id``) the app store issues are one and the same value.
"""

from __future__ import annotations

from kit.identifiers import pairwise_subject


def sector_identifier(app_id: str) -> str:
    return f"urn:edu-platform:app:{app_id}"


def user_pseudonym(salt: str, app_id: str, person_id: str) -> str:
    """The user's pairwise subject identifier at the app."""
    return pairwise_subject(salt, sector_identifier(app_id), person_id)
