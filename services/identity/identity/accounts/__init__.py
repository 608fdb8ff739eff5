"""Login and account security: passwords, lockout, TOTP second factor, browser sessions."""
