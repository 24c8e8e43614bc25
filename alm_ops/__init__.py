"""Tooling that runs and talks to TorchServe from outside: archives, the server's config, a
private server for tests and benchmarks, the HTTP client and the command-line tools on it.

It may import the core (alm_forecaster) but never TorchServe's ``ts``; the core never imports
it. Submodules are imported by name: serve_config stays stdlib-only (the container entrypoint
runs it without requests), so this file imports nothing.
"""
