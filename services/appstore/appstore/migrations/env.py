from appstore.models import metadata
from kit.migrations import run_migrations

run_migrations(metadata)
