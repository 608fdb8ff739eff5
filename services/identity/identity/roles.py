"""Which roles may do what in the identity directory, and the OAuth scopes each operation needs."""

from __future__ import annotations

ADMIN_ROLES = ("city_admin", "district_admin", "school_admin")
ORG_MANAGERS = ("city_admin", "district_admin")
DIRECTORY_READERS = (*ADMIN_ROLES, "auditor")
AUDIT_READERS = ("auditor",)
KEY_MANAGERS = ("city_admin",)

SCOPE_ORG_READ = "org.read"
SCOPE_ORG_WRITE = "org.write"
SCOPE_PEOPLE_READ = "people.read"
SCOPE_PEOPLE_WRITE = "people.write"
SCOPE_IDENTITY_REVEAL = "student.identity.read"
SCOPE_AUDIT_READ = "audit.read"
SCOPE_KEYS_MANAGE = "keys.manage"

REQUIRED_SCOPES = (
    SCOPE_ORG_READ,
    SCOPE_ORG_WRITE,
    SCOPE_PEOPLE_READ,
    SCOPE_PEOPLE_WRITE,
    SCOPE_IDENTITY_REVEAL,
    SCOPE_AUDIT_READ,
    SCOPE_KEYS_MANAGE,
)
