"""Formerly the CPU speed kernels (oneDNN linear layers with a hand-written backward, whole MLPs
as one autograd node, a lean fused-Adam step). Measured against torch's standard ops on the
project's 2-core AMD EPYC machine (torch 2.13, one thread, `benchmarks/train_throughput.py`
configuration), they gained 1.0-1.07x per update, under the 1.3x that would pay for their code,
so the networks now run on torch's standard ops everywhere. `fused_adam` keeps the two optimizer
calls the update step makes, as torch's own.
"""
