"""Off-policy evaluation: estimate a policy's value from logged episodes without running it."""

from bear_core.ope.fqe import FQE, EvaluatedPolicy, PolicyValueEstimate, estimate_policy_value

__all__ = ["FQE", "EvaluatedPolicy", "PolicyValueEstimate", "estimate_policy_value"]
