"""Service configuration, read from BEAR_* environment variables."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1 << 20
# ray://head:10001 (Ray Client) or head:6379 (GCS), the host a name, an IPv4 or a bracketed IPv6
RAY_ADDRESS = re.compile(r"(ray://)?([\w.\-]+|\[[0-9a-fA-F:]+\]):\d{1,5}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BEAR_", extra="ignore")

    store: Path = Field(default=Path("model_store"), description="model store directory")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(
        default=1, ge=1, le=64, description="`python -m service` processes on one port and store"
    )
    grpc_port: int | None = Field(
        default=8001,
        ge=1,
        le=65535,
        description="port of the Open Inference Protocol's gRPC service on `host` (Triton's "
        "8001); empty: no gRPC",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated X-API-Key values; model management is refused without one",
    )
    require_key_for_inference: bool = False
    default_model: str | None = Field(
        default=None,
        description="model behind the bare /predict paths (default: the only one served)",
    )
    max_batch: int = Field(default=4096, ge=1, description="most rows in one inference request")
    max_body_bytes: int = Field(default=8 * MIB, ge=1024, description="request body limit")
    max_upload_bytes: int = Field(default=256 * MIB, ge=1024, description="bundle upload limit")
    max_dataset_bytes: int = Field(default=1024 * MIB, ge=1024, description="dataset upload limit")
    ort_threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads per graph")
    offload_rows: int = Field(
        default=256, ge=1, description="batches above this many rows run on a worker thread"
    )
    batching: bool = Field(
        default=True,
        description="micro-batch concurrent requests per model (rows run as they would alone: "
        "the answers do not depend on the company a request had); gRPC's plain calls run alone",
    )
    batch_max_rows: int = Field(default=64, ge=1)
    batch_max_delay_ms: float = Field(default=0.0, ge=0.0, le=100.0)
    fast_predict: bool = Field(
        default=True,
        description="answer plain POST /predict bodies and plain gRPC ModelInfer calls on the "
        "hot paths (service/inference/fast_predict.py, grpc_server.py's _plain_actions); false: "
        "every request takes the FastAPI route, every call the general path",
    )
    busy_poll_us: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="after each answered request, keep the worker's event loop polling instead of "
        "sleeping for this many microseconds (service/core/busy_poll.py): a control loop's next "
        "call is then read at once, for up to a core per worker while calls keep coming; 0: off",
    )
    ood_default: bool = Field(
        default=False,
        description="return the out-of-distribution flag (ood, ood_score) on every inference "
        "call whose model has a detector, unless the request says otherwise",
    )
    promotion_margin: float = Field(
        default=0.0,
        allow_inf_nan=False,
        description="gated promotion: how much the candidate's held-out estimate (discounted "
        "return) must exceed production's",
    )
    log_level: str = "INFO"
    dispatcher: bool = Field(
        default=True,
        description="run the training-job dispatcher in this process; false when "
        "`python -m service.worker` runs it beside the API",
    )
    max_concurrent_jobs: int = Field(
        default=1, ge=1, description="training jobs run at the same time"
    )
    job_poll_s: float = Field(default=0.5, gt=0.0, le=10.0, description="dispatcher poll interval")
    cancel_grace_s: float = Field(
        default=30.0,
        ge=0.0,
        description="time a cancelled trainer gets to checkpoint before SIGKILL",
    )
    trainer_python: str = Field(
        default=sys.executable,
        description="interpreter that runs `-m bear_core train`",
    )
    trainer_threads: int | None = Field(
        default=None, ge=1, description="OMP_NUM_THREADS of each trainer (default: torch's choice)"
    )
    allow_gpu: bool = Field(default=False, description="let POST /train ask for use_gpu")
    max_sweep_trials: int = Field(
        default=64, ge=1, le=10_000, description="most trials (training jobs) one sweep may ask for"
    )
    ray_address: str | None = Field(
        default=None,
        description="run every training job on this Ray cluster: 'ray://<head>:10001' (Ray "
        "Client), or 'auto' / '<head>:6379' where the dispatcher runs on a cluster node; empty: "
        "jobs run as local child processes",
    )
    ray_num_cpus: float = Field(default=1.0, gt=0.0, description="CPUs a job asks Ray for")
    ray_namespace: str = Field(
        default="bear-serve", min_length=1, description="Ray namespace of the jobs' actors"
    )
    eval_env_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated modules an eval_env of the form 'module:Env-v0' may "
        "import in the trainer (default: none, registered gymnasium ids only)",
    )
    sync_interval_s: float = Field(
        default=2.0,
        gt=0.0,
        description="longest time before this process rescans the store for changes made "
        "outside the service (changes made through it are seen within 0.1 s)",
    )
    body_idle_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        description="a request whose body sends nothing for this long is answered 408",
    )
    staging_max_age_s: float = Field(
        default=3600.0,
        ge=60.0,
        description="at start-up, staging entries (<store>/tmp) nothing was written to for this "
        "long are removed: leftovers of uploads whose process was killed",
    )
    demo: bool = Field(default=True, description="`python -m service` trains a demo model if none")
    dataset_max_rows: int = Field(
        default=10_000_000, ge=1, le=100_000_000, description="most rows a dataset may declare"
    )
    dataset_max_row_width: int = Field(
        default=1 << 20, ge=1, le=16 * MIB, description="most elements in one row of one array"
    )
    dataset_max_declared_bytes: int = Field(
        default=8 * 1024 * MIB,
        ge=1024,
        le=64 * 1024 * MIB,
        description="most bytes a dataset's arrays may declare in all (uncompressed)",
    )
    dataset_max_expansion: float = Field(
        default=64.0,
        ge=1.0,
        le=1000.0,
        description="most declared bytes per byte of the uploaded file (compression ratio)",
    )
    dataset_max_chunk_bytes: int = Field(
        default=16 * MIB, ge=1024, le=256 * MIB, description="largest HDF5 chunk, uncompressed"
    )
    dataset_check_memory_bytes: int = Field(
        default=1024 * MIB,
        ge=256 * MIB,
        description="address-space limit of the child process that reads an upload's values",
    )
    dataset_check_timeout_s: float = Field(
        default=300.0, gt=0.0, description="time the child process may take to read an upload"
    )

    @field_validator("api_keys", "eval_env_modules", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("grpc_port", "ray_address", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_keys")
    @classmethod
    def _long_enough(cls, keys: list[str]) -> list[str]:
        if any(len(key) < 8 for key in keys):
            raise ValueError("every API key needs at least 8 characters")
        return keys

    @field_validator("ray_address")
    @classmethod
    def _ray_driver_address(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or RAY_ADDRESS.fullmatch(value):
            return value
        hint = ", not the dashboard's http address" if value.startswith("http") else ""
        raise ValueError(
            f"ray_address {value!r}: give the cluster's Ray Client address 'ray://<head>:10001', "
            f"a GCS address '<head>:6379' or 'auto' on a cluster node{hint}"
        )

    @model_validator(mode="after")
    def _keys_for_inference(self) -> Settings:
        if self.require_key_for_inference and not self.api_keys:
            raise ValueError("require_key_for_inference needs at least one key in api_keys")
        return self

    @model_validator(mode="after")
    def _ports_differ(self) -> Settings:
        if self.grpc_port == self.port:
            raise ValueError(f"grpc_port must differ from port ({self.port})")
        return self
