"""Settings: each one an environment variable of the same name; command-line options win.

Validated by msgspec: a bad value is refused at start-up with the variable's name and the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

Positive = Annotated[int, msgspec.Meta(ge=1)]


class SettingsError(ValueError):
    pass


def _path_from_str(kind: type, value: Any) -> Any:
    """msgspec has no Path type of its own: FANLINE_DATA_DIR arrives as a string."""
    if kind is Path and isinstance(value, str | Path):
        return Path(value)
    raise TypeError(f"expected a path, got {value!r}")


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    data_dir: Path = Path(".fanline")
    backend: Literal["sqlite", "aws"] = "sqlite"
    strategy: Literal["push", "pull", "hybrid"] = "hybrid"
    celebrity_threshold: Positive = 50_000
    timeline_cap: Positive = 800
    backfill_depth: Positive = 50
    consistency_wait_ms: Annotated[int, msgspec.Meta(ge=0)] = 2000
    secret: str | None = None
    shards: Positive = 4
    # The AWS backend: None means AWS itself (credentials from the usual chain).
    endpoint_url: str | None = None
    # Kinesis's endpoint when it differs from endpoint_url (kinesalite and dynalite listen on two ports).
    kinesis_endpoint_url: str | None = None
    region: str = "us-east-1"
    stream_name: str = "fanline-events"
    table_prefix: str = "fanline-"
    # The archive on the aws backend (issue 6): an S3 bucket (none: no archive), and S3's endpoint
    # when it is an emulator of its own (moto); the sqlite backend archives under data_dir/archive.
    archive_bucket: str | None = None
    s3_endpoint_url: str | None = None
    # Requests per second per bearer token on /v1 (api.ratelimit; bursts of twice that; 0: no limit).
    rate_limit_per_s: Annotated[int, msgspec.Meta(ge=0)] = 100
    # Timeline pages the API keeps while their feed stamp holds (api.timeline_cache; 0: none).
    page_cache_mib: Annotated[int, msgspec.Meta(ge=0)] = 64
    # The social graph projection (issue 10) behind suggestions and mutuals: "off" (the Store's follow
    # lists answer), "embedded" (gremlite: graph.db in data_dir) or "neptune" (Gremlin at
    # neptune_host, IAM auth by SigV4 in `region` when neptune_iam).
    graph: Literal["off", "embedded", "neptune"] = "off"
    neptune_host: str | None = None
    neptune_iam: bool = True

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Defaults, then FANLINE_* variables, then `overrides` (command-line options; None = unset)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in cls.__struct_fields__:
            raw = environ.get(f"FANLINE_{field.upper()}")
            if raw not in (None, ""):
                values[field] = raw
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        try:
            return msgspec.convert(values, cls, strict=False, dec_hook=_path_from_str)
        except msgspec.ValidationError as exc:
            # msgspec says "... - at `$.strategy`": the setting FANLINE_STRATEGY.
            raise SettingsError(f"bad setting: {exc}") from exc

    def signing_secret(self) -> str:
        """FANLINE_SECRET, or a secret generated once into the data directory (mode 0600)."""
        if self.secret:
            return self.secret
        path = self.data_dir / "secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(32))
        return path.read_text().strip()
