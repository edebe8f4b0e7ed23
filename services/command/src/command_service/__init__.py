"""The command service: the suite's write side over HTTP (see README.md).

`command_service.app.create_app(settings)` wires it; `python -m command_service` runs it.
"""
