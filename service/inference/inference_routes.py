"""Task endpoints in d3rlpy's verbs: predict, sample_action, value. Each exists for the default
model (/predict), for a model's production version (/models/{name}/predict) and for one version
(/models/{name}/versions/{version}/predict)."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends

from bear_core.bundle.runtime import value_stats
from service.core.api_schemas import error_responses
from service.core.deps import SettingsDep
from service.core.security import require_inference_key
from service.inference.inference_schemas import (
    ActionsResponse,
    PredictRequest,
    SampleActionRequest,
    ValueRequest,
    ValueResponse,
)
from service.inference.model_resolvers import default_model, model_version, named_model
from service.inference.request_arrays import as_batch
from service.inference.served_model import ServedModel

ERRORS = error_responses(401, 403, 404, 413, 422)

router = APIRouter(tags=["inference"], dependencies=[Depends(require_inference_key)])

Resolver = Callable[..., Coroutine[Any, Any, ServedModel]]


def _observations(served: ServedModel, rows: list[list[float]], max_batch: int) -> np.ndarray:
    manifest = served.bundle.manifest
    return as_batch(
        rows, "observations", manifest.observation_shape, manifest.observation_dtype, max_batch
    )


async def _ood(
    served: ServedModel, wanted: bool, observations: np.ndarray, actions: np.ndarray | None = None
) -> dict[str, Any]:
    """The response's ood and ood_score fields when `wanted` (nothing otherwise)."""
    if not wanted:
        return {}
    flags, scores = await served.ood(observations, actions)
    return {"ood": flags.tolist(), "ood_score": scores.tolist()}


def _add_routes(prefix: str, resolve: Resolver) -> None:
    Model = Annotated[ServedModel, Depends(resolve)]

    @router.post(
        f"{prefix}/predict",
        responses=ERRORS,
        response_model_exclude_none=True,
        summary="greedy actions",
    )
    async def predict(
        body: PredictRequest, served: Model, settings: SettingsDep
    ) -> ActionsResponse:
        observations = _observations(served, body.observations, settings.max_batch)
        ood = served.wants_ood(body.ood, settings.ood_default)
        actions = await served.predict(observations)
        return ActionsResponse(
            actions=actions.tolist(),
            model=served.name,
            version=served.version,
            **await _ood(served, ood, observations),
        )

    @router.post(
        f"{prefix}/sample_action",
        responses=ERRORS,
        response_model_exclude_none=True,
        summary="sampled actions",
    )
    async def sample_action(
        body: SampleActionRequest, served: Model, settings: SettingsDep
    ) -> ActionsResponse:
        observations = _observations(served, body.observations, settings.max_batch)
        ood = served.wants_ood(body.ood, settings.ood_default)
        actions = await served.sample(observations, body.seed)
        return ActionsResponse(
            actions=actions.tolist(),
            model=served.name,
            version=served.version,
            **await _ood(served, ood, observations),
        )

    @router.post(
        f"{prefix}/value",
        responses=ERRORS,
        response_model_exclude_none=True,
        summary="Q(s, a) over the critic ensemble",
    )
    async def value(body: ValueRequest, served: Model, settings: SettingsDep) -> ValueResponse:
        observations = _observations(served, body.observations, settings.max_batch)
        actions = as_batch(
            body.actions,
            "actions",
            (served.bundle.action_size,),
            "float32",
            settings.max_batch,
            rows=len(observations),
        )
        ood = served.wants_ood(body.ood, settings.ood_default)
        q = await served.q_values(observations, actions)
        values, stds = value_stats(q, body.with_std)
        return ValueResponse(
            values=values.tolist(),
            stds=None if stds is None else stds.tolist(),
            per_critic=q.tolist() if body.per_critic else None,
            model=served.name,
            version=served.version,
            **await _ood(served, ood, observations, actions),
        )


_add_routes("", default_model)
_add_routes("/models/{name}", named_model)
_add_routes("/models/{name}/versions/{version}", model_version)
