"""docs/operations.md, the operator's guide, names only deployment files that exist."""

from __future__ import annotations

import re

from tests.deploy.conftest import ROOT

#: What a name of a deployment file looks like in the guide (in backquotes).
DEPLOYMENT_FILE = r"`((?:deploy|docker)/[\w./-]+|Dockerfile|compose\.yaml|\.dockerignore)`"


def test_operations_doc_names_existing_deployment_files():
    text = (ROOT / "docs" / "operations.md").read_text()
    named = set(re.findall(DEPLOYMENT_FILE, text))
    assert len(named) >= 10
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"docs/operations.md names missing files: {missing}"
