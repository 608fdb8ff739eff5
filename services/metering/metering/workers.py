"""Background workers of the metering service, started and stopped with the app (unless background work is off)."""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI


class Worker(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def build_workers(app: FastAPI) -> list[Worker]:
    """Each sub-domain's worker, if it has one: ``build_worker(app)`` in its ``worker`` module."""
    import importlib

    workers: list[Worker] = []
    for name in ("statements", "benefit"):
        try:
            module = importlib.import_module(f"metering.{name}.worker")
        except ModuleNotFoundError as exc:
            if exc.name != f"metering.{name}.worker":
                raise
            continue
        worker = module.build_worker(app)
        if worker is not None:
            workers.append(worker)
    return workers
