"""The one reader of the environment: every `MODELSHOP_*` variable is a field here.

No other module reads `os.environ`; they take a `Settings` (usually from `get_settings()`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "secret", "admin", "password", "test"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELSHOP_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development", description="production refuses placeholder secrets")
    home: Path = Field(
        Path.home() / ".modelshop",
        description="where the SQLite database, registered models and runs live")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file under home (WAL)")
    redis_url: str | None = Field(
        None, description="Redis URL for rate limits and quotas shared by replicas; default: in-process")
    admin_key: SecretStr | None = Field(
        None, description="bearer key for admin routes; `modelshop demo` makes one when unset")
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads; default: torch's own choice")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    progress: bool = Field(True, description="show progress bars on stderr")

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        if self.env == "production" and self.admin_key is not None:
            if self.admin_key.get_secret_value().lower() in PLACEHOLDER_SECRETS:
                raise ValueError("MODELSHOP_ADMIN_KEY is a placeholder; set a real secret in production")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'modelshop.db'}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
