"""Model-based extension: the probabilistic ensemble dynamics model behind BEAR's `dynamics=`."""

from bear_core.dynamics.probabilistic_ensemble import ProbabilisticEnsembleDynamics

__all__ = ["ProbabilisticEnsembleDynamics"]
