"""Models: the on-disk model store, the registry of loaded and production versions, bundle
uploads, the demo model, and the model management API."""
