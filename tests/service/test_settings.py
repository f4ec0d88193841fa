"""Settings refuse a Ray address that no Ray client could connect to, naming the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.core.settings import Settings


@pytest.mark.parametrize(
    "address",
    ["auto", "ray://ray-head:10001", "10.0.0.7:6379", "[::1]:6379", "ray://head.svc:10001"],
)
def test_ray_addresses_users_give_are_accepted(address: str) -> None:
    assert Settings(ray_address=address).ray_address == address


def test_an_empty_ray_address_means_no_cluster() -> None:
    assert Settings(ray_address="  ").ray_address is None


@pytest.mark.parametrize(
    "address",
    ["${BEAR_RAY_ADDRESS:-}", "ray-head", "ray://ray-head", "http://ray-head:8265", "ray://h:1 x"],
)
def test_a_malformed_ray_address_is_refused_at_start(address: str) -> None:
    with pytest.raises(ValidationError, match="ray_address") as error:
        Settings(ray_address=address)
    assert "ray://<head>:10001" in str(error.value)
