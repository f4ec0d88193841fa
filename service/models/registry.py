"""Model versions loaded in memory, and which version of each model is in production.

Reads take no lock: a request looks up a ServedModel once and keeps that object until it has
answered. Promotion loads and verifies the new version first, off the event loop, and only then
replaces the production entry (one dict assignment under a lock), so requests in flight finish on
the version they started with, and a version that fails to load never replaces a working one.

Other processes may change the store under this one: `sync_production` forgets versions deleted
(or deleted and published again under the same number) there and adopts the production versions
set there. `follow`, called every CHANGES_POLL_S, runs it when the store's change token
(ModelStore.changes) moved, and at least every sync interval in any case (for changes made by
hand). So a deletion elsewhere is answered 404 here within CHANGES_POLL_S plus one rescan (a
directory listing and a few stats: milliseconds), and a promotion elsewhere serves here once that
version has also loaded here (~0.1 s for a small bundle); until then the old version answers.
Requests pay nothing for this: they read the in-memory tables only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bear_core.bundle import BundleError, load_bundle
from service.core.http_errors import InvalidBundle, NotFound
from service.core.prometheus import Metrics
from service.inference.served_model import Execution, ServedModel
from service.models.model_store import ModelStore, check_name, check_version

CHANGES_POLL_S = 0.1  # how often a process reads the store's change token


class Registry:
    def __init__(
        self,
        store: ModelStore,
        metrics: Metrics,
        execution: Execution,
        logger: logging.Logger,
        ort_threads: int = 1,
        default_model: str | None = None,
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._execution = execution
        self._log = logger
        self._ort_threads = ort_threads
        self._default_model = default_model
        self._loaded: dict[tuple[str, str], ServedModel] = {}
        # the store's identity of each loaded version when it was loaded (ModelStore.identity)
        self._identities: dict[tuple[str, str], tuple[int, int, int] | None] = {}
        self._production: dict[str, ServedModel] = {}
        self._lock = threading.Lock()
        self.failed: dict[str, str] = {}  # model -> why its production version did not load
        self._unloadable: dict[tuple[str, str], tuple[int, int, int] | None] = {}
        self._seen_changes: str | None = None
        self._synced_at = time.monotonic()
        metrics.watch_models(self._loaded_models)

    # --- start-up -------------------------------------------------------------------------------

    def load_production(self) -> None:
        """Load the production version of every model in the store; failures are logged and
        remembered (readiness reports them), the other models still load."""
        for name in self.store.models():
            version = self.store.production(name)
            if version is None:
                continue
            try:
                served = self.load(name, version)
            except (InvalidBundle, NotFound) as exc:
                self.failed[name] = exc.message
                self._log.error("production model failed to load", extra={"model": name})
                continue
            with self._lock:
                self._production[name] = served

    # --- lookups (hot path) ---------------------------------------------------------------------

    def production(self, name: str | None = None) -> ServedModel:
        """The production version of `name`, or of the default model when name is None."""
        if name is None:
            return self._default()
        served = self._production.get(name)
        if served is None:
            check_name(name)
            raise NotFound(f"model {name!r} has no production version")
        return served

    def cached(self, name: str, version: str) -> ServedModel | None:
        return self._loaded.get((name, version))

    def versions(self, name: str) -> list[str]:
        """The model's versions in the store, oldest first (blocking)."""
        return self.store.versions(name)

    def load(self, name: str, version: str) -> ServedModel:
        """A loaded version (from memory, or loaded and verified now: blocking, ~0.1 s)."""
        key = (check_name(name), check_version(version))
        served = self._loaded.get(key)
        if served is not None:
            return served
        path = self.store.bundle_path(name, version)
        identity = self.store.identity(name, version)
        try:
            bundle = load_bundle(path, intra_op_threads=self._ort_threads)
        except BundleError as exc:
            self._metrics.load_failures.labels(name).inc()
            raise InvalidBundle(f"model {name!r} version {version!r} cannot load: {exc}") from None
        served = ServedModel(name, version, bundle, self._execution, self._metrics)
        served.warm_up()
        with self._lock:
            if key not in self._loaded:
                self._identities[key] = identity
            served = self._loaded.setdefault(key, served)
        self._log.info("model loaded", extra={"model": name, "version": version})
        return served

    # --- changes --------------------------------------------------------------------------------

    def publish(self, name: str, bundle_dir: Path, promote: bool = False) -> str:
        """Publish a bundle directory as the next version of `name` (promoted when asked);
        returns the version. Blocking: call it from a worker thread."""
        version = self.store.publish(name, bundle_dir)
        if promote:
            self.promote(name, version)
        return version

    def promote(self, name: str, version: str, expect: str | None = None) -> str | None:
        """Make `version` the production version; returns the previous one. With `expect`, only
        while the store's production version is still `expect` (Conflict otherwise). Blocking:
        call it from a worker thread."""
        served = self.load(name, version)
        with self._lock:
            previous = self.store.set_production(name, version, expect)
            self._production[name] = served
            self.failed.pop(name, None)
        self._log.info(
            "model promoted",
            extra={"model": name, "version": version, "previous": previous},
        )
        return previous

    def follow(self, rescan_s: float) -> None:
        """Run sync_production when the store's change token moved since the last sync, or
        when the last one is `rescan_s` old. Blocking (a small file read): a worker thread."""
        token = self.store.changes()  # read first: a change during the sync moves it again
        if token == self._seen_changes and time.monotonic() - self._synced_at < rescan_s:
            return
        self.sync_production()
        self._seen_changes, self._synced_at = token, time.monotonic()

    def sync_production(self) -> None:
        """Follow changes other processes made in the store: forget loaded versions deleted or
        replaced there, and adopt the production versions set there (a separate job worker
        publishing with promote, another API process promoting). A version that fails to load
        is logged once and skipped; the version in memory keeps serving."""
        self._forget_changed()
        for name in self.store.models():
            version = self.store.production(name)
            current = self._production.get(name)
            if version is None or (
                current is not None
                and current.version == version
                and self._loaded.get((name, version)) is current
            ):
                continue
            key = (name, version)
            if key in self._unloadable and self._unloadable[key] == self.store.identity(*key):
                continue
            try:
                served = self.load(name, version)
            except (InvalidBundle, NotFound) as exc:
                self._unloadable[key] = self.store.identity(*key)
                self._log.error(
                    "production version set in the store does not load",
                    extra={"model": name, "version": version, "error": exc.message},
                )
                continue
            with self._lock:
                if self._production.get(name) is served:
                    continue  # a promote in this process swapped it in meanwhile
                if self.store.production(name) != version:
                    continue  # changed again meanwhile (a promote here, or elsewhere): next time
                self._production[name] = served
                self.failed.pop(name, None)
            self._log.info(
                "production version changed in the store",
                extra={"model": name, "version": version},
            )

    def _forget_changed(self) -> None:
        """Drop loaded versions whose directory is gone or holds another bundle now; requests
        for them then find the store's state (404, or the new bundle loaded afresh)."""
        for key in list(self._loaded):
            if self.store.identity(*key) == self._identities.get(key):
                continue
            with self._lock:
                self._loaded.pop(key, None)
                self._identities.pop(key, None)
            self._log.info(
                "model version deleted or replaced in the store: unloaded",
                extra={"model": key[0], "version": key[1]},
            )

    def delete(self, name: str, version: str) -> None:
        """Delete a non-production version from the store and from memory."""
        with self._lock:
            self.store.delete(name, version)
            self._loaded.pop((name, version), None)
            self._identities.pop((name, version), None)
        self._log.info("model version deleted", extra={"model": name, "version": version})

    # --- state ----------------------------------------------------------------------------------

    def ready(self) -> bool:
        return not self.failed

    def production_versions(self) -> dict[str, str]:
        return {name: served.version for name, served in self._production.items()}

    def _loaded_models(self) -> Iterator[tuple[str, str, bool]]:
        production = self.production_versions()
        for name, version in list(self._loaded):
            yield name, version, production.get(name) == version

    def _default(self) -> ServedModel:
        if self._default_model is not None:
            return self.production(self._default_model)
        serving = list(self._production.values())
        if len(serving) == 1:
            return serving[0]
        if not serving:
            raise NotFound("no model is in production: publish and promote one")
        raise NotFound(
            f"{len(serving)} models are in production; name one (/models/{{name}}/predict) "
            "or set BEAR_DEFAULT_MODEL"
        )
