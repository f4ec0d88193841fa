"""The CPU speed kernels the networks and optimizers run on."""
