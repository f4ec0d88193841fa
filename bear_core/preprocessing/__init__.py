"""Scalers for observations and actions, as torch modules baked into every exported graph."""
