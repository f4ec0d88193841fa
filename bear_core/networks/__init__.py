"""The neural networks: layers, observation encoders, the policy, the behaviour models and the
critic ensembles."""
