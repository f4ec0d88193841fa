"""The neural networks: layers, observation encoders, the policy, the behaviour models and the
critic ensembles, with the CPU speed kernels they run on in `kernels`."""
