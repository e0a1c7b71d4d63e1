"""`xccel serve`: the metrics over HTTP.

- service.py: the database side (a pool of read-only connections; answers computed by the report code)
- cache.py: answers cached by publication, with their ETag and headers; the shared per-request check
- app.py: the FastAPI app, its routes and OpenAPI models, errors as JSON
- middleware.py: what every answer shares (HEAD, CORS, security headers, 406, redirects, fast paths)
- telemetry.py: request counts and latency for GET /metrics
- negotiation.py: Accept (q-values), Accept-Encoding, If-None-Match
- runtime.py: the socket, uvicorn (with a parser that answers JSON), serve()
"""
