"""Prints the JSON schema of the prometheus-operator PodMonitor, from PyPI's cloudcoil CRD models.

A command (``python -m tests.deploy.podmonitor_schema``), not a test helper to import: the models
take seconds to import (pydantic builds about a thousand of them), so the Kubernetes tests run
this in a child process on the other core while their other checks run.
"""

from __future__ import annotations

import json
import sys

from cloudcoil.models.prometheus_operator.v1 import PodMonitor


def main() -> None:
    json.dump(PodMonitor.model_json_schema(by_alias=True, mode="validation"), sys.stdout)


if __name__ == "__main__":
    main()
