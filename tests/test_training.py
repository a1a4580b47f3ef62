"""`invoke train`: real TensorFlow workers on the local engine, on a swarm, and the Kubernetes
Job's pods rehearsed on the local engine. One TensorFlow image, built once per session."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nbdock import image
from nbdock.project import Project
from nbdock.settings import load_settings
from nbdock.training import model
from nbdock.training.k8s import KubernetesBackend
from nbdock.training.run import run_workers
from tests.helpers.notebooks import notebook
from tests.helpers.projects import REPO, ProjectCopy, Result, clean_environment, owner
from tests.helpers.rehearsal import Rehearsal, RehearsedKubectl
from tests.helpers.tracker import Tracker
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.docker
EXAMPLE = REPO / "examples" / "distributed-tf"
HASH = re.compile(r"weights sha256=([0-9a-f]{64})")
LOSS = re.compile(r"loss first=([-0-9.e]+) last=([-0-9.e]+)")
FAILING = """\
import json, os, sys
if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1:
    raise RuntimeError("worker 1 breaks on purpose")
import tensorflow as tf
tf.distribute.MultiWorkerMirroredStrategy()  # waits for worker 1, which never comes
"""
# The chief writes a file of its own and ends well; worker 1 fails in its third cell a little later.
FAILING_NOTEBOOK = notebook(
    "import json, os, time\nindex = json.loads(os.environ['TF_CONFIG'])['task']['index']",
    "if index == 0:\n    with open(os.path.join(os.environ['NBDOCK_OUTPUT'], 'chief.txt'), 'w') as out:\n"
    "        out.write('from the chief')",
    "if index == 1:\n    time.sleep(3)\n    raise RuntimeError('worker 1 breaks on purpose')",
)


def run_folder(project: ProjectCopy, result: Result) -> Path:
    matched = re.search(r"Logs and the chief's outputs: (.+)$", result.stdout, re.MULTILINE)
    assert matched, result.output
    return Path(matched.group(1))


def hashes(folder: Path, workers: int) -> list[str]:
    found = []
    for index in range(workers):
        matched = HASH.search((folder / f"worker-{index}.log").read_text())
        assert matched, (folder / f"worker-{index}.log").read_text()
        found.append(matched.group(1))
    return found


def assert_trained(project: ProjectCopy, result: Result, workers: int = 2) -> Path:
    assert result.returncode == 0, result.output
    folder = run_folder(project, result)
    assert folder.parent == project.path / "outputs" / "train"
    digests = hashes(folder, workers)
    assert len(set(digests)) == 1, digests
    first, last = map(float, LOSS.search((folder / "worker-0.log").read_text()).groups())  # type: ignore[union-attr]
    assert last < first
    assert [row[-2] for row in summary_rows(result, workers)] == ["ok"] * workers
    return folder


def summary_rows(result: Result, workers: int) -> list[list[str]]:
    """The summary table's rows, split into cells: the node is the third from the end."""
    indexes = [[str(index)] for index in range(workers)]
    return [line.split() for line in result.stdout.splitlines() if line.split()[:1] in indexes][-workers:]


def test_two_local_workers_train_to_the_same_weights(tf_project: ProjectCopy, docker_client: Any) -> None:
    result = tf_project.invoke("train", "--workers", "2", "--script", "train.py")
    folder = assert_trained(tf_project, result)
    chief = json.loads((folder / "result.json").read_text())
    assert chief["workers"] == 2 and chief["weights_sha256"] == hashes(folder, 2)[0]
    assert ((folder / "result.json").stat().st_uid, (folder / "result.json").stat().st_gid) == owner()
    assert "[worker 1] weights sha256=" in result.stdout  # the workers' logs, live
    assert [row[-3] for row in summary_rows(result, 2)] == [socket.gethostname()] * 2
    assert Tracker(docker_client).leftovers(tf_project.name) == []


def test_a_failing_worker_stops_the_others_at_once(tf_project: ProjectCopy, docker_client: Any) -> None:
    started = time.monotonic()
    result = tf_project.invoke("train", "--workers", "2", "--script", "fails.py", "--timeout", "300")
    assert time.monotonic() - started < 120
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.output
    assert result.message.startswith("nbdock: ") and "worker 1" in result.message
    assert "RuntimeError: worker 1 breaks on purpose" in result.stdout
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line[:1] in "01"}
    assert rows["1"][-2] == "failed" and rows["0"][-2] in ("stopped", "failed")
    assert Tracker(docker_client).leftovers(tf_project.name) == []


def test_a_notebook_on_two_workers_gets_its_parameters(tf_project: ProjectCopy) -> None:
    result = tf_project.invoke("train", "--workers", "2", "--notebook", "train.ipynb", "-p", "steps=7")
    folder = assert_trained(tf_project, result)
    executed = json.loads((folder / "train.ipynb").read_text())
    text = json.dumps(executed)
    assert "steps = 7" in text and "loss first=" in text and "weights sha256=" in text


def test_a_run_past_its_timeout_is_stopped(tf_project: ProjectCopy, docker_client: Any) -> None:
    result = tf_project.invoke("train", "--workers", "2", "--script", "sleeps.py", "--timeout", "8")
    assert result.returncode == 1, result.output
    assert "was stopped after 8 s (TRAIN_TIMEOUT)" in result.stdout
    assert "timed out" in result.message
    assert Tracker(docker_client).leftovers(tf_project.name) == []


def test_ctrl_c_stops_and_removes_every_worker(tf_project: ProjectCopy, docker_client: Any) -> None:
    running = subprocess.Popen(
        [sys.executable, "-m", "invoke", "train", "--workers", "2", "--script", "sleeps.py"],
        cwd=tf_project.path, env=clean_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    tracker = Tracker(docker_client)
    wait_until(lambda: len([c for c in tracker.leftovers(tf_project.name) if c.startswith("container")]) == 2,
               120, "two workers")
    running.send_signal(signal.SIGINT)
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 130 and stderr.strip().endswith("nbdock: interrupted"), stderr
    assert tracker.leftovers(tf_project.name) == []


def test_bad_input_is_one_line(tf_project: ProjectCopy, make_project: Any) -> None:
    for args, phrase in [
        ((), "say what to train"),
        (("--script", "train.py", "--notebook", "train.ipynb"), "one of them"),
        (("--script", "missing.py"), "does not exist"),
        (("--script", "train.ipynb"), "give a .py path"),
        (("--script", "train.py", "-p", "steps=3"), "-p parameters fill a notebook"),
        (("--script", "train.py", "--workers", "0"), "TRAIN_WORKERS in the --workers flag is invalid"),
        (("--script", "train.py", "--backend", "slurm"), "TRAIN_BACKEND in the --backend flag is invalid"),
    ]:
        result = tf_project.invoke("train", *args)
        assert result.returncode == 1 and "Traceback" not in result.output, result.output
        assert phrase in result.message, (args, result.message)
    plain = make_project()
    (plain.notebooks / "train.py").write_text("print('hi')\n")
    result = plain.invoke("train", "--script", "train.py")
    assert result.returncode == 1 and "TensorFlow does not import in the image" in result.message, result.output
    assert "requirements.txt" in result.message


def test_two_swarm_workers_train_to_the_same_weights(tf_project: ProjectCopy, swarm: bool, docker_client: Any) -> None:
    if docker_client.info()["Swarm"]["LocalNodeState"] != "active":  # the swarm fixture leaves it at the end
        docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
    result = tf_project.invoke("train", "--workers", "2", "--script", "train.py", "--backend", "swarm")
    assert_trained(tf_project, result)
    # The services and their network are gone at once; Swarm then removes the tasks' containers.
    wait_until(lambda: Tracker(docker_client).leftovers(tf_project.name) == [], 30, "Swarm to remove the workers")


def test_the_kubernetes_job_trains_when_its_pods_are_rehearsed(
    tf_project: ProjectCopy, registry: str, docker_client: Any, tracker: Tracker, tmp_path: Path
) -> None:
    with (tf_project.path / ".env").open("a") as env:
        env.write(f"REGISTRY={registry}/nbdock-tests\n")
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    written = tf_project.invoke("train", "--workers", "2", "--script", "train.py", "--backend", "k8s",
                                KUBECONFIG=str(tmp_path / "kubeconfig"))
    assert written.returncode == 1 and "Traceback" not in written.output, written.output
    assert written.message.startswith("nbdock: ") and ("does not answer" in written.message
                                                        or "kubectl is not installed" in written.message)
    assert "Wrote " in written.stdout and not (tf_project.path / "k8s" / "server.yaml").exists()
    service, job = yaml.safe_load_all((tf_project.path / "k8s" / "train.yaml").read_text())
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    network = f"{tracker.labels['io.nbdock.test']}-k8s"
    docker_client.networks.create(network, labels=dict(tracker.labels))
    rehearsal = Rehearsal(docker_client, tracker.labels, network=network)
    pod = job["spec"]["template"]["spec"]
    name = job["metadata"]["name"]
    field = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    workers = [rehearsal.run(pod, f"{name}-{index}", {field: str(index)},
                             aliases=[f"{name}-{index}.{pod['subdomain']}"]) for index in range(2)]
    for worker in workers:
        assert worker.wait(timeout=300)["StatusCode"] == 0, worker.logs().decode()
    digests = [HASH.search(worker.logs().decode()) for worker in workers]
    assert all(digests) and len({d.group(1) for d in digests if d}) == 1


def test_a_kubernetes_run_rehearsed_shows_the_failing_cell_and_brings_the_chiefs_outputs_back(
    tf_project: ProjectCopy, registry: str, docker_client: Any, tracker: Tracker, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(tf_project.path, environ={**os.environ, "NBDOCK_REGISTRY": f"{registry}/nbdock-tests"})
    project = Project(settings)
    run = model.prepare(project, None, "k8s_fails.ipynb", [], 2, 2222, 300)
    network = f"{tracker.labels['io.nbdock.test']}-k8s-run"
    docker_client.networks.create(network, labels=dict(tracker.labels))
    kubectl = RehearsedKubectl(Rehearsal(docker_client, tracker.labels, network=network), settings)
    backend = KubernetesBackend(project, run, image.build(project, execute=True), kubectl=kubectl)
    folder = model.run_folder(project, run)
    outcomes = run_workers(project, run, backend, folder)
    assert [outcome.status for outcome in outcomes] == ["ok", "failed"], outcomes
    assert [outcome.node for outcome in outcomes] == [kubectl.context] * 2  # the pods' spec.nodeName
    assert outcomes[1].detail[0] == "failing cell:", outcomes[1].detail
    assert "RuntimeError: worker 1 breaks on purpose" in outcomes[1].detail
    assert (folder / "chief.txt").read_text() == "from the chief"  # no shared folder: through the log
    assert json.loads((folder / "k8s_fails.ipynb").read_text())["cells"]
    assert (folder / "worker-1" / "k8s_fails.ipynb").is_file()
    assert ((folder / "chief.txt").stat().st_uid, (folder / "chief.txt").stat().st_gid) == owner()
    logs = [(folder / f"worker-{index}.log").read_text() for index in range(2)]
    assert all(model.OUTPUTS_BEGIN not in log for log in logs)
    shown = capsys.readouterr().out
    assert "[worker 1] " in shown and model.OUTPUTS_BEGIN not in shown  # live, without the archive
    assert kubectl.pods_by_index == {}  # the Job's pods are deleted at the end
