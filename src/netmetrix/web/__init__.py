"""The web side: a read-only dashboard, Prometheus ``/metrics`` and a JSON API over the store.

``create_app`` builds the ASGI application (Starlette) for ``netmetrix serve``
and ``netmetrix watch --listen``; ``server`` runs it with uvicorn.  Nothing
here writes to the store, the config or a host.
"""

from netmetrix.web.app import create_app

__all__ = ["create_app"]
