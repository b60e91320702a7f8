"""docker/Dockerfile without a Docker engine: its instructions parsed (build arguments, stages,
what the runtime image holds) and the login-shell PATH snippet run under bash."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
SNIPPET = ROOT / "docker" / "venv-path.sh"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (name -> default) and the stages of a Dockerfile: comment lines dropped (also
    inside continuations), continued lines joined, one (KEYWORD, arguments) per instruction."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, flags=re.IGNORECASE)
            assert m, f"unreadable FROM: {line}"
            stages.append(Stage(m.group(1), m.group(2) or str(len(stages))))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            name, _, default = rest.partition("=")
            global_args[name] = default.strip('"')
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


def expand(value: str, args: dict[str, str]) -> str:
    for _ in range(5):  # defaults may refer to earlier arguments
        value = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)
    return value


@pytest.fixture(scope="module")
def dockerfile():
    return parse(DOCKERFILE.read_text())


def test_base_images_and_torch_source_are_build_arguments(dockerfile):
    args, stages = dockerfile
    assert {"VARIANT", "PYTHON_VERSION", "CPU_BASE", "CUDA_BASE", "TORCH_INDEX_URL", "TORCH_SPEC"} <= set(args)
    assert expand(args["CPU_BASE"], args) == "python:3.11-slim-bookworm"
    for stage in stages:  # every variable of a FROM line is a global build argument
        assert set(re.findall(r"\$\{(\w+)\}", stage.base)) <= set(args), stage.base
    by_name = {s.name: s for s in stages}
    assert by_name["base-cpu"].base == "${CPU_BASE}" and by_name["base-cuda"].base == "${CUDA_BASE}"
    build = by_name["build"]
    assert "TORCH_INDEX_URL" in build.args("ARG") and "TORCH_SPEC" in build.args("ARG")
    torch_install = [r for r in build.args("RUN") if "--index-url" in r]
    assert len(torch_install) == 1
    assert "${TORCH_INDEX_URL:-$DEFAULT_TORCH_INDEX_URL}" in torch_install[0]
    assert "${TORCH_SPEC:-$DEFAULT_TORCH_SPEC}" in torch_install[0]


def test_the_cpu_variant_pins_the_torch_of_the_readme(dockerfile):
    _, stages = dockerfile
    readme_pin = re.search(r"pip install (torch==[\d.]+)", (ROOT / "README.md").read_text()).group(1)
    env = " ".join({s.name: s for s in stages}["base-cpu"].args("ENV"))
    assert f"DEFAULT_TORCH_SPEC={readme_pin}" in env
    assert "DEFAULT_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in env


def test_every_variant_names_a_stage(dockerfile):
    args, stages = dockerfile
    names = [s.name for s in stages]
    for variant in ("cpu", "cuda"):
        for stage in stages:
            base = expand(stage.base, {**args, "VARIANT": variant})
            if base.startswith("base-"):
                assert base in names[: names.index(stage.name)], f"{stage.name}: FROM {base} is no earlier stage"
    for stage in stages:
        for copy in stage.args("COPY"):
            m = re.search(r"--from=(\S+)", copy)
            if m:
                assert m.group(1) in names[: names.index(stage.name)], copy
            else:  # a path of the build context (the repository root)
                for src in copy.split()[:-1]:
                    assert (ROOT / src).exists(), f"COPY {src}: not in the repository"


def test_the_runtime_image_has_no_build_tools_git_or_tests(dockerfile):
    args, stages = dockerfile
    by_name = {s.name: s for s in stages}
    runtime = stages[-1]
    assert runtime.name == "runtime", "the runtime stage must be the last (the default target)"
    for variant in ("cpu", "cuda"):
        chain = [runtime, by_name[expand(runtime.base, {**args, "VARIANT": variant})]]
        text = " ".join(a for s in chain for k, a in s.instructions if k in ("RUN", "COPY", "ADD"))
        for banned in ("build-essential", "gcc", " git", "-dev", "tests", "benchmarks"):
            assert banned not in text, f"{variant} runtime image: {banned.strip()!r} in {text!r}"
        assert not [c for s in chain for c in s.args("COPY") if c.split()[0] in ("generator", "evaluation", "trainer", "inference", ".")]
    assert "--from=build /opt/venv /opt/venv" in runtime.args("COPY")
    build = " ".join(by_name["build"].args("RUN"))
    assert "build-essential" in build and "git" in build  # they live in the build stage


def test_a_plain_debian_base_gets_python_from_debian(dockerfile):
    """CPU_APT_PYTHON=1 installs Debian's python3 (and its headers in the build stage); empty, the
    default, leaves the python image alone. The shell of the RUN line does the expansion."""
    args, stages = dockerfile
    assert args["CPU_APT_PYTHON"] == ""
    base = {s.name: s for s in stages}["base-cpu"]
    assert {"CPU_APT_PYTHON", "PYTHON_VERSION"} <= set(base.args("ARG"))
    assert "PYTHON_DEV_PACKAGE=${CPU_APT_PYTHON:+python3-dev}" in " ".join(base.args("ENV"))
    run = " ".join(base.args("RUN"))
    m = re.search(r"\$\{CPU_APT_PYTHON:\+[^}]*\}", run)
    assert m, run
    assert "${PYTHON_VERSION}" in run  # the base's Python is checked against PYTHON_VERSION
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    for value, expected in (("", set()), ("1", {"python3", "python3-venv", "python-is-python3"})):
        out = subprocess.run([sh, "-c", f"echo {m.group(0)}"], capture_output=True, text=True, check=True,
                             env={"CPU_APT_PYTHON": value}).stdout.split()
        assert expected <= set(out) and bool(out) == bool(value), (value, out)


def test_the_test_image_holds_what_the_tests_read(dockerfile):
    _, stages = dockerfile
    copied = {c.split()[0] for c in {s.name: s for s in stages}["test"].args("COPY")}
    assert {"tests", "benchmarks", "docker"} <= copied


def test_login_shells_get_the_venv_on_path(dockerfile):
    _, stages = dockerfile
    copies = [c.split() for c in stages[-1].args("COPY")]
    assert ["docker/venv-path.sh", "/etc/profile.d/crystalstream-venv.sh"] in copies
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    # what Debian's /etc/profile does: reset PATH, then source /etc/profile.d/*.sh (twice here)
    script = f'PATH=/usr/local/bin:/usr/bin:/bin; . "{SNIPPET}"; . "{SNIPPET}"; echo "$PATH|$VIRTUAL_ENV"'
    out = subprocess.run([bash, "--noprofile", "--norc", "-c", script], capture_output=True, text=True,
                         env={}, check=True).stdout.strip()
    assert out == "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin|/opt/venv"


def test_the_build_context_leaves_out_environments_and_runs():
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "outputs", "shared"} <= set(ignore)


def test_the_parser_sees_a_broken_dockerfile():
    with pytest.raises(AssertionError):
        parse("RUN echo before any FROM\nFROM scratch\n")
    args, stages = parse("ARG A=1\nFROM x:${A} AS one\n# c\nRUN a \\\n# inside\n    b\nFROM one\n")
    assert args == {"A": "1"} and [s.name for s in stages] == ["one", "1"]
    assert stages[0].instructions == [("RUN", "a b")]
