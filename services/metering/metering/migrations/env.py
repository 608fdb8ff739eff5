from kit.migrations import run_migrations
from metering.models import metadata

run_migrations(metadata)
