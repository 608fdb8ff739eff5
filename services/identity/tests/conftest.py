from identity.testing import app, client, directory, settings, token_for

__all__ = ["app", "client", "directory", "settings", "token_for"]
