"""headway: zero-downtime deploys, instant rollback, production and staging on your own Docker hosts."""

__version__ = "0.1.0"
