"""An instance: settings + data dir + the two stores, opened lazily and closed together."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from tessera.clock import Clock, SystemClock
from tessera.datadir import DataDir
from tessera.settings import Settings, load_settings
from tessera.stores.analytic import AnalyticStore
from tessera.stores.operational import OperationalStore, sqlite_url
from tessera.stores.profile_columns import ProfileColumns


class Instance:
    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.data_dir = DataDir.at(data_dir if data_dir is not None else self.settings.data)
        self.clock: Clock = clock or SystemClock()

    @cached_property
    def operational(self) -> OperationalStore:
        url = self.settings.store.operational_url or sqlite_url(self.data_dir.sqlite_path)
        return OperationalStore(url)

    @cached_property
    def analytic(self) -> AnalyticStore:
        return AnalyticStore(
            self.data_dir.duckdb_path,
            threads=self.settings.store.duckdb_threads,
            memory_limit=self.settings.store.duckdb_memory_limit,
        )

    @cached_property
    def profile_columns(self) -> ProfileColumns:
        """In-memory profile columns for fast audience counts (one cache per analytic store)."""
        return ProfileColumns(self.analytic, budget_bytes=self.settings.audiences.columns_memory_mb * 2**20)

    def close(self) -> None:
        self.__dict__.pop("profile_columns", None)
        if "analytic" in self.__dict__:
            self.analytic.close()
            del self.__dict__["analytic"]
        if "operational" in self.__dict__:
            self.operational.close()
            del self.__dict__["operational"]

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
