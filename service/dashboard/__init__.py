"""The dashboard: a static page at GET / that reads the service's own JSON API."""
