"""One rule for a missing tool: skip on a developer's machine, fail in CI (``ALM_REQUIRE_TOOLS=1``,
exported by .ci/run), never a silent skip. Every skip in tests/ goes through
`tests.helpers.unavailable`, except the hardware ones (no GPU, no AVX512-BF16), which are listed
here."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REQUIRE_TOOLS, ROOT, debian_tool, unavailable

#: The skips that stay skips in CI, by file: hardware that cannot be installed.
HARDWARE_SKIPS = {
    "tests/test_gpu.py": "not torch.cuda.is_available()",  # no GPU in CI (scripts/gpu_check.sh where one is lent)
    "tests/test_native.py": "not cpu_has_bf16()",  # a CPU without AVX512-BF16
}
SKIP = re.compile(r"pytest\.(skip\(|importorskip\(|mark\.skipif\()")


def test_ci_requires_every_tool():
    assert re.search(rf"^export {REQUIRE_TOOLS}=1$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_a_missing_tool_skips_here_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv(REQUIRE_TOOLS, raising=False)
    with pytest.raises(pytest.skip.Exception, match="install it"):
        unavailable("thing is missing: install it")
    monkeypatch.setenv(REQUIRE_TOOLS, "1")
    with pytest.raises(pytest.fail.Exception, match=rf"install it \[{REQUIRE_TOOLS}=1: CI requires it\]"):
        unavailable("thing is missing: install it")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y --no-install-recommends no-such-package"):
        debian_tool("no-such-tool-anywhere", "no-such-package")


def test_no_test_skips_except_through_the_one_rule_or_for_hardware():
    found = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name in ("tests/helpers.py", "tests/test_required_tools.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if SKIP.search(line):
                found[f"{name}:{number}"] = line.strip()
    allowed = {
        where: line
        for where, line in found.items()
        if where.split(":")[0] in HARDWARE_SKIPS and HARDWARE_SKIPS[where.split(":")[0]] in line
    }
    assert found.keys() == allowed.keys(), {k: v for k, v in found.items() if k not in allowed}
    assert {where.split(":")[0] for where in allowed} == set(HARDWARE_SKIPS)
