"""kaq's HTTP service: a thin FastAPI layer over `engine/`.

The ASGI app is `api.app:app`; build others with `api.app.create_app(settings)`.
"""
