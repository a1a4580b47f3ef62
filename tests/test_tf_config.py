"""TF_CONFIG and the worker's command on each backend (no engine needed)."""

from __future__ import annotations

import json
import re

import pytest

from nbdock import k8s
from nbdock.contract import dns_label
from nbdock.notebooks import PAPERMILL
from nbdock.training.model import WAIT_FOR_PEERS, Training, WorkerOutcome, summary, tf_config

LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_local_and_swarm_tf_config_names_every_worker_once(workers: int) -> None:
    base = dns_label("nbdock-my_project.v2-train-20261129-101500-ab12")
    hosts = [f"{base}-{index}:2222" for index in range(workers)]
    configs = [json.loads(tf_config(hosts, index)) for index in range(workers)]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(workers)]
    assert all(c["cluster"] == {"worker": hosts} for c in configs)
    assert all(LABEL.match(host.rsplit(":", 1)[0]) and len(host.split(":")[0]) <= 63 for host in hosts)
    assert len(set(hosts)) == workers


@pytest.mark.parametrize("workers", [1, 3])
def test_kubernetes_tf_config_takes_its_index_from_the_completion_index(workers: int) -> None:
    text = k8s.tf_config("My_Project.v2", workers, 2222)
    expanded = json.loads(text.replace("$(JOB_COMPLETION_INDEX)", "1"))
    hosts = k8s.worker_hosts("My_Project.v2", workers, 2222)
    assert expanded == {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": 1}}
    job = k8s.object_name("My_Project.v2", "train")
    assert hosts == [f"{job}-{index}.{job}:2222" for index in range(workers)]


def test_a_worker_waits_for_its_peers_then_runs_the_script_or_the_notebook() -> None:
    script = Training("sub/train.py", False, (), 2, 2222, 60)
    command = script.command(["a:2222", "b:2222"], "/home/nbdock/outputs")
    assert command[:3] == ("python", "-c", WAIT_FOR_PEERS)
    assert command[3:] == ("120", "a:2222", "b:2222", "--", "python", "/home/nbdock/notebooks/sub/train.py")
    notebook = Training("train.ipynb", True, (("steps", "7"),), 2, 2222, 60)
    run = notebook.command(["a:2222", "b:2222"], "/out")
    assert run[run.index("--") + 1:run.index("--") + 5] == (*PAPERMILL, "/home/nbdock/notebooks/train.ipynb")
    assert "/out/train.ipynb" in run and run[-3:] == ("-p", "steps", "7")


def test_the_summary_names_the_chief() -> None:
    outcomes = [WorkerOutcome(0, "w-0:2222", "node-a", "ok", 12.3, []),
                WorkerOutcome(1, "w-1:2222", "node-b", "failed", 2.0, [])]
    lines = summary(outcomes)
    assert lines[0].split() == ["worker", "host", "node", "status", "seconds"]
    assert lines[1].split() == ["0", "(chief)", "w-0:2222", "node-a", "ok", "12.3"]
    assert lines[2].split() == ["1", "w-1:2222", "node-b", "failed", "2.0"]
