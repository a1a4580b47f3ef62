"""Rendering Dockerfile.template, compared with a checked-in expected file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nbdock import dockerfile
from nbdock.context import ContextPlan, plan_context
from nbdock.environment import read_environment
from nbdock.errors import NbdockError
from nbdock.settings import load_settings

DATA = Path(__file__).resolve().parent / "data"


def plan(folder: Path) -> ContextPlan:
    settings = load_settings(folder, environ={})
    return plan_context(settings, read_environment(folder))


def render(folder: Path, execute: bool = False) -> str:
    return dockerfile.render(plan(folder), execute=execute)


def example(tmp_path: Path, **env: str) -> Path:
    (tmp_path / "notebooks").mkdir(exist_ok=True)
    (tmp_path / "requirements.txt").write_text("tabulate\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    lines = {"PROJECT_NAME": "example", "BASE_IMAGE": "nbdock-base:bookworm", "CA_CERT": "ca.pem",
             "JUPYTER_PACKAGES": "jupyterlab>=4.6,<5", **env}
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return tmp_path


def test_the_default_template_renders_the_expected_dockerfile(tmp_path: Path) -> None:
    assert render(example(tmp_path)) == (DATA / "Dockerfile.expected").read_text()


def test_rendering_is_deterministic_and_follows_the_files(tmp_path: Path) -> None:
    first = render(example(tmp_path))
    assert render(tmp_path) == first
    assert "COPY --chown=1000:1000 requirements.txt" in first and "apt-get" not in first
    (tmp_path / "apt.txt").write_text("graphviz\n")
    (tmp_path / "requirements.txt").unlink()
    changed = render(tmp_path)
    assert "COPY apt.txt" in changed and "requirements.txt" not in changed


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_package_specifiers_are_quoted_for_the_shell(tmp_path: Path, installer: str) -> None:
    text = render(example(tmp_path, EXECUTE_PACKAGES="papermill>=2.6 nbconvert<8", INSTALLER=installer),
                  execute=True)
    command = "uv pip install" if installer == "uv" else "/bin/pip install"
    assert f"{command} 'jupyterlab>=4.6,<5' \\\n" in text
    assert f"{command} 'papermill>=2.6' 'nbconvert<8'\n" in text


def test_dependencies_are_installed_before_the_notebooks_are_copied(tmp_path: Path) -> None:
    text = render(example(tmp_path), execute=True)
    notebooks = text.index("COPY --chown=1000:1000 notebooks/")
    for step in ("pip install 'jupyterlab", "pip install papermill", "pip install -r"):
        assert 0 < text.index(step) < notebooks


@pytest.mark.parametrize(
    ("installer", "command"),
    [("uv", ". /tmp/nbdock-uv/pip-settings && uv pip install"), ("pip", "/opt/nbdock/venv/bin/pip install")],
)
def test_the_execution_image_only_adds_the_execution_packages(tmp_path: Path, installer: str, command: str) -> None:
    serving = render(example(tmp_path, INSTALLER=installer))
    execution = render(tmp_path, execute=True)
    added = [line for line in execution.splitlines() if line not in serving.splitlines()]
    assert added == [f"RUN umask 0002 && {command} papermill==2.7.0 nbconvert==7.17.2 ipykernel==7.4.0"]


def test_pip_keeps_the_way_before_uv(tmp_path: Path) -> None:
    text = render(example(tmp_path, INSTALLER="pip"), execute=True)
    assert "uv" not in text.replace("jupyterlab.NeverCheckForUpdate", "")
    assert "RUN umask 0002 && python3 -m venv /opt/nbdock/venv \\\n && /opt/nbdock/venv/bin/pip install" in text
    assert "cd /opt/nbdock/project && /opt/nbdock/venv/bin/pip install -r requirements.txt\n" in text


def test_uv_is_pinned_and_stays_in_the_build_stage(tmp_path: Path) -> None:
    text = render(example(tmp_path), execute=True)
    final_stage = text[text.rindex("\nFROM ") :]
    assert "pip install --quiet --target /tmp/nbdock-uv uv==" in text
    assert "uv" not in final_stage and "/tmp/nbdock" not in final_stage
    # pip stays in the environment (python3 -m venv seeds it) for `%pip install` at run time.
    assert "python3 -m venv /opt/nbdock/venv" in text


@pytest.mark.parametrize(
    ("requirements", "options"),
    [
        ("six==1.16.0 --hash=sha256:" + "0" * 64 + "\n", "--require-hashes -r requirements.txt"),
        ("--pre\nsix\n", "--prerelease allow -r requirements.txt"),
        ("--trusted-host a.example\n--trusted-host=b.example:8080\nsix\n",
         "--allow-insecure-host a.example --allow-insecure-host b.example:8080 -r requirements.txt"),
    ],
)
def test_what_uv_reads_only_from_its_command_line_is_put_there(
    tmp_path: Path, requirements: str, options: str
) -> None:
    example(tmp_path)
    (tmp_path / "requirements.txt").write_text(requirements)
    assert f"uv pip install {options}\n" in render(tmp_path)
    (tmp_path / ".env").write_text((tmp_path / ".env").read_text() + "INSTALLER=pip\n")
    assert "/opt/nbdock/venv/bin/pip install -r requirements.txt\n" in render(tmp_path)


def test_metadata_is_set_once_in_the_shared_stage(tmp_path: Path) -> None:
    text = render(example(tmp_path))
    system = text[: text.index("\nFROM system AS environment")]
    for instruction in ("ENV ", "WORKDIR ", "EXPOSE ", "HEALTHCHECK ", "ENTRYPOINT ", "CMD "):
        assert f"\n{instruction}" in system, instruction
    final_stage = text[text.rindex("\nFROM ") :]
    assert [line.split()[0] for line in final_stage.splitlines() if line and line[0].isupper()] == [
        "FROM", "COPY", "LABEL", "COPY"
    ]
    assert "COPY --from=environment /opt/nbdock /opt/nbdock\n" in final_stage  # ownership kept, no chown


def test_the_ca_bundle_stays_in_the_build_stage(tmp_path: Path) -> None:
    text = render(example(tmp_path))
    final_stage = text[text.rindex("\nFROM ") :]
    assert "COPY .nbdock/ca.pem" in text and "ca.pem" not in final_stage
    assert "cp \"$PIP_CERT\" .nbdock/ca.pem" in text.splitlines()[3]
    without = render(example(tmp_path, CA_CERT=""))
    assert "ca.pem" not in without and "docker build ." in without.splitlines()[1]


def test_linked_data_and_environment_files_are_copied_from_their_own_places(tmp_path: Path) -> None:
    example(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("1\n")
    (tmp_path / "notebooks" / "data").symlink_to("../data")
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder" / "requirements.txt").write_text("-r base.txt\n")
    (tmp_path / "binder" / "base.txt").write_text("six\n")
    (tmp_path / "binder" / "postBuild").write_text("#!/bin/sh\necho built > $HOME/built\n")
    text = render(tmp_path)
    assert "COPY --chown=1000:1000 data /home/nbdock/data\n" in text
    assert "COPY --chown=1000:1000 binder/base.txt /opt/nbdock/project/binder/base.txt\n" in text
    assert "pip install -r binder/requirements.txt\n" in text
    assert "./binder/postBuild" in text and "COPY --from=environment /home/nbdock /home/nbdock" in text


def test_a_projects_own_template_wins(tmp_path: Path) -> None:
    example(tmp_path)
    (tmp_path / "Dockerfile.template").write_text(
        "# Generated by nbdock from Dockerfile.template\nFROM {{ base_image }}\n"
    )
    assert render(tmp_path).endswith("FROM nbdock-base:bookworm\n")


def test_an_unchanged_project_is_rendered_from_the_cache_without_jinja(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = render(example(tmp_path))
    jinja2 = sys.modules["jinja2"]
    monkeypatch.setitem(sys.modules, "jinja2", None)  # an import of Jinja2 now fails
    assert render(tmp_path) == first  # the very text, trailing newline included
    (tmp_path / "requirements.txt").write_text("tabulate\nrich\n")
    assert render(tmp_path) == first  # the requirements' content is not the Dockerfile's
    (tmp_path / "apt.txt").write_text("graphviz\n")
    with pytest.raises(ImportError):  # a new value for the template: rendered again
        render(tmp_path)
    monkeypatch.setitem(sys.modules, "jinja2", jinja2)
    (tmp_path / "Dockerfile.template").write_text("# Generated by nbdock from Dockerfile.template\nFROM x\n")
    assert render(tmp_path).endswith("FROM x\n")  # a new template: rendered again


def test_an_unknown_template_variable_is_an_error(tmp_path: Path) -> None:
    example(tmp_path)
    (tmp_path / "Dockerfile.template").write_text("FROM {{ no_such_value }}\n")
    with pytest.raises(NbdockError, match="no_such_value"):
        render(tmp_path)


def test_write_never_overwrites_a_dockerfile_it_did_not_generate(tmp_path: Path) -> None:
    text = render(example(tmp_path))
    target = tmp_path / "Dockerfile"
    assert dockerfile.write(tmp_path, text) == target
    assert target.read_text() == text
    target.write_text("FROM scratch\n")
    with pytest.raises(NbdockError, match="not generated by nbdock"):
        dockerfile.write(tmp_path, text)
    assert target.read_text() == "FROM scratch\n"


def test_the_repositorys_template_is_the_packaged_one() -> None:
    repository = Path(__file__).resolve().parent.parent
    template = repository / "Dockerfile.template"
    assert template.resolve() == repository / "src" / "nbdock" / "defaults" / "Dockerfile.template"  # one copy
    assert template.read_text() == dockerfile.default_file("Dockerfile.template").read_text()


@pytest.mark.parametrize("execute", [False, True])
def test_every_file_the_dockerfile_copies_is_in_the_context(tmp_path: Path, execute: bool) -> None:
    import io
    import tarfile
    import tempfile

    from nbdock.context import write_archive

    example(tmp_path)
    (tmp_path / "requirements.txt").unlink()
    for name, text in {"binder/requirements.txt": "-r base.txt\n./libs/pkg\n", "binder/base.txt": "six\n",
                       "binder/apt.txt": "tree\n", "binder/postBuild": "#!/bin/sh\n", "libs/pkg/setup.py": "",
                       "data/t.csv": "1\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "notebooks" / "data").symlink_to("../data")
    context = plan(tmp_path)
    text = dockerfile.render(context, execute=execute)
    with tempfile.TemporaryFile() as target:
        write_archive(context, text, target)
        with tarfile.open(fileobj=io.BytesIO(target.read())) as tar:
            sent = set(tar.getnames())
    copied = [line.split()[-2] for line in text.splitlines()
              if line.startswith("COPY ") and "--from=" not in line]
    assert copied and all(source.rstrip("/") in sent for source in copied), (copied, sent)


def steps_in_order(text: str, *steps: str) -> list[int]:
    return [text.index(step) for step in steps]


def test_each_install_follows_only_the_files_it_reads(tmp_path: Path) -> None:
    """Editing postBuild or the project's package must leave the requirements' install cached."""
    example(tmp_path)
    (tmp_path / "requirements.txt").write_text("-r base.txt\n")
    (tmp_path / "base.txt").write_text("six\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'analysis'\nversion = '1'\n")
    (tmp_path / "src" / "analysis").mkdir(parents=True)
    (tmp_path / "src" / "analysis" / "__init__.py").write_text("")
    (tmp_path / "postBuild").write_text("#!/bin/sh\necho built\n")
    text = render(tmp_path)
    order = steps_in_order(text, "COPY --chown=1000:1000 base.txt", "COPY --chown=1000:1000 requirements.txt",
                           "install -r requirements.txt", "COPY --chown=1000:1000 pyproject.toml",
                           "COPY --chown=1000:1000 src ", "install .\n", "COPY --chown=1000:1000 postBuild",
                           "./postBuild")
    assert order == sorted(order), text


def test_a_folder_the_requirements_install_whole_is_copied_once(tmp_path: Path) -> None:
    example(tmp_path)
    (tmp_path / "requirements.txt").unlink()
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder" / "setup.py").write_text("")
    (tmp_path / "binder" / "requirements.txt").write_text("./binder\n")
    (tmp_path / "binder" / "postBuild").write_text("#!/bin/sh\necho built\n")
    text = render(tmp_path)
    assert text.count("COPY --chown=1000:1000 binder") == 1, text  # postBuild comes with its folder
    copied = text.index("COPY --chown=1000:1000 binder /opt")
    assert copied < text.index("install -r") < text.index("./binder/postBuild")
