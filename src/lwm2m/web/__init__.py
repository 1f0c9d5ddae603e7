"""REST API, server-sent events, Prometheus metrics and the web UI.

``create_app(server, bootstrap, api_token=...)`` builds the FastAPI app,
``serve(app, host, port)`` runs it inside the running asyncio loop and
``check_bind(host, api_token)`` gives the warning to print when the API
would be open to other hosts without a token.
"""

from __future__ import annotations

from lwm2m.web.app import WebServer, build_app, check_bind, create_app, serve

__all__ = ["WebServer", "build_app", "check_bind", "create_app", "serve"]
