"""Server-rendered pages of the identity service: login, second factor, password change, account."""
