"""Training plumbing around the algorithm: the epoch loop (`loop.fitter`), the run-directory
logger, and rollouts of a learned dynamics model into the training batches."""
