"""`python -m vendor_app`: serve the sample app on VENDOR_APP_PORT (default 8110)."""

from __future__ import annotations

import uvicorn

from vendor_app.app import create_app
from vendor_app.config import Settings


def main() -> None:
    settings = Settings.from_env()
    uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
