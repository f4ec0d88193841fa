"""The BEAR algorithm: its losses as pure math, the update step that orders them, the modules
(networks, learnable scalars, optimizers) it trains, and the `BEAR` class (the public API)."""
