"""Which notebooks `execute` runs, and how parameters are read (no engine needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbdock.errors import NbdockError
from nbdock.execute import choose_kernel, summary
from nbdock.notebooks import (
    allows_errors,
    expected_errors,
    failure_in,
    find_notebooks,
    parse_parameters,
    remove_added_tags,
    write_tagged_copy,
)
from nbdock.project import Project
from nbdock.settings import load_settings


def make(tmp_path: Path, **env: str) -> Project:
    for name in ("b.ipynb", "a.ipynb", "sub/c.ipynb", ".ipynb_checkpoints/a-checkpoint.ipynb",
                 "notes.txt", "outputs/a.ipynb"):
        path = tmp_path / "notebooks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return Project(load_settings(tmp_path, environ={}))


def test_every_notebook_in_a_stable_order_without_checkpoints(tmp_path: Path) -> None:
    project = make(tmp_path, OUTPUT_DIR="notebooks/outputs")
    assert find_notebooks(project.settings, []) == ["a.ipynb", "b.ipynb", "sub/c.ipynb"]


def test_chosen_notebooks_must_exist_inside_the_folder(tmp_path: Path) -> None:
    project = make(tmp_path)
    assert find_notebooks(project.settings, ["sub/c.ipynb"]) == ["sub/c.ipynb"]
    with pytest.raises(NbdockError, match="does not exist"):
        find_notebooks(project.settings, ["missing.ipynb"])
    with pytest.raises(NbdockError, match=r"notes\.txt is not a \.ipynb file"):
        find_notebooks(project.settings, ["notes.txt"])
    (tmp_path / "elsewhere.ipynb").write_text("{}")
    with pytest.raises(NbdockError, match="outside NOTEBOOKS_DIR"):
        find_notebooks(project.settings, [str(tmp_path / "elsewhere.ipynb")])


@pytest.mark.parametrize("output", ["notebooks", "."])
def test_outputs_may_not_hold_the_notebooks(tmp_path: Path, output: str) -> None:
    with pytest.raises(NbdockError, match="never overwrite your notebooks"):
        find_notebooks(make(tmp_path, OUTPUT_DIR=output).settings, [])


def test_parameters_are_name_value_pairs() -> None:
    assert parse_parameters(["n=3", "label=a=b", "empty="]) == [("n", "3"), ("label", "a=b"), ("empty", "")]
    with pytest.raises(NbdockError, match="not name=value"):
        parse_parameters(["n"])
    with pytest.raises(NbdockError, match="not name=value"):
        parse_parameters(["not a name=1"])


def test_the_failing_cell_is_read_from_the_executed_notebook(tmp_path: Path) -> None:
    executed = tmp_path / "out.ipynb"
    executed.write_text(
        '{"cells": [{"cell_type": "code", "source": ["x = 1\\n", "1/0"], "outputs": ['
        '{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",'
        '"traceback": ["\\u001b[0;31mZeroDivisionError\\u001b[0m: division by zero"]}]}]}'
    )
    failure = failure_in(executed)
    assert failure is not None
    assert failure.source == "x = 1\n1/0"
    assert (failure.name, failure.value) == ("ZeroDivisionError", "division by zero")
    assert failure.traceback == "ZeroDivisionError: division by zero"
    assert failure_in(tmp_path / "missing.ipynb") is None


def test_the_cell_during_which_the_kernel_died_is_the_last_one_started(tmp_path: Path) -> None:
    executed = tmp_path / "out.ipynb"
    cells = [("ok = 1", {"status": "completed", "start_time": "t1"}),
             ("big = bytearray(10**10)", {"status": "completed", "start_time": "t2"}),
             ("never = 1", {"status": "pending"})]
    executed.write_text(json.dumps({"cells": [
        {"cell_type": "code", "source": source, "outputs": [], "metadata": {"papermill": meta}}
        for source, meta in cells
    ]}))
    assert failure_in(executed) is None
    failure = failure_in(executed, died=True)
    assert failure is not None and failure.source == "big = bytearray(10**10)"
    assert failure.name == "DeadKernelError"


def notebook(tmp_path: Path, kernelspec: dict[str, str], language: str = "") -> Path:
    import json

    path = tmp_path / "n.ipynb"
    metadata: dict[str, object] = {"kernelspec": kernelspec}
    if language:
        metadata["language_info"] = {"name": language}
    path.write_text(json.dumps({"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.mark.parametrize(
    ("kernelspec", "language", "chosen", "kernel", "note"),
    [
        ({"name": "python3", "language": "python"}, "", "", "python3", ""),
        ({"name": "conda-env-analysis-py", "language": "python"}, "", "", "python3",
         "ran with python3: the notebook's kernel conda-env-analysis-py is not in the image"),
        ({"name": "venv-py311"}, "python", "", "python3",
         "ran with python3: the notebook's kernel venv-py311 is not in the image"),
        ({}, "", "", "python3", ""),
        ({"name": "ir", "language": "R"}, "", "", None,
         "needs a r kernel (ir), which the image does not have"),
        ({"name": "conda-env-analysis-py", "language": "python"}, "", "mykernel", "mykernel", ""),
        ({"name": "mykernel", "language": "python"}, "", "", "mykernel", ""),
    ],
)
def test_the_kernel_is_the_notebooks_own_else_the_images_python(
    tmp_path: Path, kernelspec: dict[str, str], language: str, chosen: str, kernel: str | None, note: str
) -> None:
    path = notebook(tmp_path, kernelspec, language)
    assert choose_kernel(path, {"python3", "mykernel"}, chosen) == (kernel, note)


def test_the_summary_names_a_substituted_kernel(tmp_path: Path) -> None:
    from nbdock.execute import Outcome

    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "a.ipynb").write_text("{}")
    outcomes = [Outcome("a.ipynb", "ok", 1.0, tmp_path / "outputs" / "a.ipynb", note="ran with python3: x"),
                Outcome("b.ipynb", "failed", 0.0, tmp_path / "outputs" / "b.ipynb", note="is not a notebook")]
    lines = summary(outcomes, tmp_path)
    assert lines[1].split()[:4] == ["a.ipynb", "ok", "1.0", "outputs/a.ipynb"]
    assert lines[1].endswith("ran with python3: x")
    assert lines[2].split()[:4] == ["b.ipynb", "failed", "0.0", "-"]  # never written


@pytest.mark.parametrize(("text", "note"), [("not json", "is not a notebook nbdock can read"),
                                            ("", "is not a notebook nbdock can read"),
                                            ("{}", "is not a notebook (no cells)")])
def test_a_file_that_is_no_notebook_is_named_before_it_runs(tmp_path: Path, text: str, note: str) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text(text)
    kernel, said = choose_kernel(path, {"python3"}, "")
    assert kernel is None and said.startswith(note)


def executed(tmp_path: Path, *cells: tuple[list[str], str | None], banner: bool = True) -> Path:
    """An executed notebook as papermill writes it: (tags, error name or None) per code cell."""
    ran = {"start_time": "2026-01-01T00:00:00", "status": "completed"}
    notebook_cells: list[dict[str, object]] = [
        {"cell_type": "code", "source": f"cell {index}", "metadata": {"tags": tags, "papermill": ran},
         "outputs": [{"output_type": "error", "ename": error, "evalue": "on purpose", "traceback": []}]
         if error else []}
        for index, (tags, error) in enumerate(cells)
    ]
    if banner:
        notebook_cells.insert(0, {"cell_type": "markdown", "source": "An Exception was encountered",
                                  "metadata": {"tags": ["papermill-error-cell-tag"]}})
    path = tmp_path / "executed.ipynb"
    path.write_text(json.dumps({"cells": notebook_cells, "metadata": {}}))
    return path


def test_an_error_in_a_cell_tagged_raises_exception_is_expected(tmp_path: Path) -> None:
    path = executed(tmp_path, ([], None), (["raises-exception"], "ZeroDivisionError"), ([], None))
    assert failure_in(path) is None
    assert expected_errors(path) == 1
    cells = json.loads(path.read_text())["cells"]
    assert [cell["source"] for cell in cells] == ["cell 0", "cell 1", "cell 2"]


def test_an_untagged_error_after_a_tagged_one_is_the_failure(tmp_path: Path) -> None:
    path = executed(tmp_path, (["raises-exception"], "ZeroDivisionError"), (["other"], "KeyError"))
    failure = failure_in(path)
    assert failure is not None and (failure.name, failure.source) == ("KeyError", "cell 1")
    assert expected_errors(path) == 0
    assert "An Exception was encountered" in path.read_text()


def test_a_tagged_cell_that_does_not_raise_and_no_error_at_all_are_no_expected_errors(tmp_path: Path) -> None:
    path = executed(tmp_path, (["raises-exception"], None), ([], None), banner=False)
    assert failure_in(path) is None
    assert expected_errors(path) == 0


def test_a_run_that_stopped_early_is_not_made_ok_by_a_tagged_error(tmp_path: Path) -> None:
    path = executed(tmp_path, (["raises-exception"], "ValueError"), ([], None))
    notebook = json.loads(path.read_text())
    notebook["cells"][-1]["metadata"]["papermill"] = {"status": "pending"}
    path.write_text(json.dumps(notebook))
    assert expected_errors(path) == 0


@pytest.mark.parametrize(("metadata", "allowed"), [
    ({"nbsphinx": {"allow_errors": True}}, True),
    ({"mystnb": {"execution_allow_errors": True}}, True),
    ({"nbsphinx": {"allow_errors": False}}, False),
    ({"nbsphinx": "yes"}, False),
    ({}, False),
])
def test_a_notebook_opts_into_errors_the_way_documentation_tools_read_it(
    tmp_path: Path, metadata: dict[str, object], allowed: bool
) -> None:
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": metadata}))
    assert allows_errors(path) is allowed


def test_the_tags_added_for_allow_errors_are_taken_out_again(tmp_path: Path) -> None:
    original = tmp_path / "n.ipynb"
    cells = [{"cell_type": "code", "source": "1/0", "metadata": {}, "outputs": []},
             {"cell_type": "code", "source": "x", "metadata": {"tags": ["raises-exception"]}, "outputs": []},
             {"cell_type": "code", "source": "y", "metadata": {"tags": ["parameters"]}, "outputs": []},
             {"cell_type": "markdown", "source": "text", "metadata": {}}]
    original.write_text(json.dumps({"cells": cells, "metadata": {"nbsphinx": {"allow_errors": True}}}))
    copy = tmp_path / "out.ipynb"
    write_tagged_copy(original, copy)
    tagged = json.loads(copy.read_text())["cells"]
    assert [c["metadata"].get("tags") for c in tagged] == [
        ["raises-exception"], ["raises-exception"], ["parameters", "raises-exception"], None]
    remove_added_tags(copy)
    assert [c["metadata"] for c in json.loads(copy.read_text())["cells"]] == [c["metadata"] for c in cells]


def test_with_allow_errors_every_error_is_expected(tmp_path: Path) -> None:
    path = executed(tmp_path, ([], "ValueError"), ([], "KeyError"))
    assert failure_in(path, everything=True) is None
    assert expected_errors(path, everything=True) == 2
