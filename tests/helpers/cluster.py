"""A real three-node Docker Swarm on this one machine, for the tests.

Each node is a `dockerd` of its own (own data root, image store, volumes, containers, key, socket)
inside namespaces of its own: a network namespace with one address on a private /24 (no route out),
a UTS namespace for its hostname, and a mount namespace with a private /run, a resolv.conf naming an
address where nothing answers, and the test projects' folder covered by an empty tmpfs, so that a
bind mount of a project path fails on a node as it would on a machine that does not have it. The
nodes meet on a bridge in a network namespace of its own; the host reaches them through a veth
with an address of its own. Node 1 is the manager, the others are workers.

A registry (Debian's docker-registry) listens on the host's 127.0.0.1:PORT, and a forwarder makes
the same 127.0.0.1:PORT answer inside every node, so one image reference works for the host
engine's push and every node's pull (engines trust loopback registries).

The manager's engine also listens on its address over TLS (client certificates from the cluster's
own CA, `tls_files`), and `serve_ssh` starts an OpenSSH server in a node's namespaces, so that a
test reaches the manager the three ways a user's machine does: a socket, TLS, ssh.

Nothing here touches the host's engine, iptables or swarm. `Cluster.close` removes everything the
cluster made, whatever state it is in, and is safe to call more than once.

A test asks for the session's `cluster` fixture and points nbdock at it: build on the host engine,
push to `cluster.registry`, deploy through `cluster.manager_host` (a `unix://` URL usable as
DOCKER_HOST); `cluster.nodes[i].address` is where a host-mode port of a task on node i answers,
`cluster.client(node)` looks at one engine, and `stop_node`, `start_node`, `drain` and `activate`
change the cluster under a running test (the cluster is shared by the session: a test that stops
or drains a node brings it back before it ends). A cluster left by a killed session is removed by
the next one (`remove_stale`).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.wait import answers, wait_until

# The commands the cluster runs, and the Debian packages they come in.
TOOLS = {"ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux", "mount": "mount",
         "dockerd": "docker.io", "containerd": "containerd", "runc": "runc", "docker-registry": "docker-registry",
         "openssl": "openssl", "ssh-keygen": "openssh-client", "sshd": "openssh-server"}
TLS_PORT = 2376  # the manager's engine also listens here, TLS with client certificates only
CGROUP_ROOT = Path("/sys/fs/cgroup")
RECORD = "cluster.json"  # in the cluster's folder: what it is called and who owns it
# The node's start: enter the namespaces made for it, set its hostname, give it a sysfs of its
# network namespace (keeping the cgroup tree, which dockerd needs), a private /run, a resolv.conf
# that leads nowhere and the hidden folder covered; then become dockerd.
NODE_SCRIPT = """set -e
echo "$1" > /proc/sys/kernel/hostname
mount --rbind /sys/fs/cgroup "$2"
mount -t sysfs sysfs /sys
mount --move "$2" /sys/fs/cgroup
mount -t tmpfs -o mode=755,size=64m tmpfs /run
mount --bind "$3" /etc/resolv.conf
mount -t tmpfs -o mode=755,size=1m tmpfs "$4"
exec dockerd --config-file "$5"
"""


class ClusterError(RuntimeError):
    """The cluster could not be started or changed; the message says which step and why."""


def default_storage_driver() -> str:
    """overlay2 where the kernel has overlayfs, else fuse-overlayfs."""
    kernel = Path("/proc/filesystems").read_text().split()
    return "overlay2" if "overlay" in kernel else "fuse-overlayfs"


def missing_tools(storage_driver: str) -> dict[str, str]:
    """The commands the cluster needs that are not on PATH, each with its Debian package."""
    needed = {**TOOLS, **({"fuse-overlayfs": "fuse-overlayfs"} if storage_driver == "fuse-overlayfs" else {})}
    return {tool: package for tool, package in needed.items() if shutil.which(tool) is None}


def _ip(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(["ip", *arguments], capture_output=True, text=True, timeout=30)
    if check and completed.returncode != 0:
        raise ClusterError(f"`ip {' '.join(arguments)}` failed: {completed.stderr.strip()}")
    return completed


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.77.0.0/16 that no address or route on the host overlaps."""
    used = []
    addresses = [line.split()[3] for line in _ip("-4", "-o", "addr").stdout.splitlines()]
    routes = [line.split()[0] for line in _ip("-4", "route").stdout.splitlines() if line.strip()]
    for text in addresses + routes:
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(text, strict=False))
    for candidate in ipaddress.IPv4Network("10.77.0.0/16").subnets(new_prefix=24):
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise ClusterError("no free /24 left in 10.77.0.0/16 for the test cluster")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _namespace_inode_of(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _namespace_inode(pid: int | str, kind: str) -> int | None:
    return _namespace_inode_of(Path(f"/proc/{pid}/ns/{kind}"))


def _identity(pid: int) -> list[int]:
    """(pid, start time in clock ticks since boot): a process, even after its pid is reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return [pid, -1]
    return [pid, int(fields[19])]


def _naming(texts: tuple[str, ...]) -> list[int]:
    """The processes whose command line contains one of `texts`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(text in command for text in texts):
                found.append(int(entry))
    return found


def _cgroups(pid: str) -> list[str]:
    try:
        return [line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()]
    except (OSError, IndexError):
        return []


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)
    if process.stdout is not None:
        process.stdout.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Node:
    """One engine of the cluster. `docker_host` is usable as DOCKER_HOST."""

    index: int
    hostname: str
    address: str  # on the cluster's private /24, reachable from the host
    folder: Path  # data root, config, socket and log of this engine
    namespace: str  # the name of its network namespace (`ip netns`)
    cgroup_parent: str  # where its containers' cgroups live
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    network_namespace: int | None = field(default=None, repr=False)  # its inode, held by `ip netns`

    @property
    def socket(self) -> Path:
        return self.folder / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def config(self) -> Path:
        return self.folder / "daemon.json"

    @property
    def log(self) -> Path:
        return self.folder / "dockerd.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Cluster:
    """A three-node swarm: `nodes[0]` is the manager, the others are workers.

    Made with `Cluster.start(root, hidden)`; `close()` removes all of it. `root` holds every
    engine's data (it must not lie under `hidden`); `hidden` is covered by an empty tmpfs on the
    nodes, so paths under it exist on the host only.
    """

    root: Path
    hidden: Path
    subnet: ipaddress.IPv4Network
    prefix: str  # names of namespaces, veths and cgroups made for this cluster start with it
    nodes: list[Node]
    registry_port: int
    registry_process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    forwarder_process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    node_ids: dict[str, str] = field(default_factory=dict)  # hostname -> swarm node id
    storage_driver: str = field(default_factory=default_storage_driver)
    shutdown_timeout: int = 5  # seconds a stopping engine gives each container

    # -- what tests use ---------------------------------------------------------------------------

    @property
    def manager(self) -> Node:
        return self.nodes[0]

    @property
    def manager_host(self) -> str:
        """The manager's Docker host URL (`unix:///...`), e.g. for SWARM_HOST or DOCKER_HOST."""
        return self.manager.docker_host

    @property
    def registry(self) -> str:
        """`127.0.0.1:PORT`: the registry, at the same address for the host engine and every node."""
        return f"127.0.0.1:{self.registry_port}"

    @property
    def manager_tls_host(self) -> str:
        """`tcp://ADDRESS:2376`: the manager's engine over TLS; it asks for a client certificate
        signed by the cluster's CA (`tls_files`)."""
        return f"tcp://{self.manager.address}:{TLS_PORT}"

    @property
    def tls_files(self) -> dict[str, Path]:
        """The CA certificate and a client certificate and key the manager's TLS listener accepts,
        as `docker context create --docker` names them: ca, cert, key."""
        folder = self.root / "tls"
        return {"ca": folder / "ca.pem", "cert": folder / "client-cert.pem", "key": folder / "client-key.pem"}

    @contextlib.contextmanager
    def serve_ssh(self, node: Node, home: Path) -> Iterator[str]:
        """An OpenSSH server in `node`'s namespaces whose sessions reach the node's engine (sshd sets
        DOCKER_HOST for `docker system dial-stdio`, which the Docker SDK and CLI run there). `home`
        gets what a user's home has for it: .ssh/id_ed25519, a key the server accepts, and the
        server's host key in .ssh/known_hosts. Yields `ssh://root@ADDRESS`; the server is stopped
        afterwards (and with the node)."""
        folder = Path(tempfile.mkdtemp(prefix="sshd-", dir=self.root))
        ssh = home / ".ssh"
        ssh.mkdir(parents=True, mode=0o700, exist_ok=True)
        for key in (folder / "host_key", ssh / "id_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                           capture_output=True)
        (folder / "authorized_keys").write_text((ssh / "id_ed25519.pub").read_text())
        (ssh / "known_hosts").write_text(f"{node.address} {(folder / 'host_key.pub').read_text()}")
        config = folder / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {node.address}:22", f"HostKey {folder / 'host_key'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
            "UsePAM no", "StrictModes no", f"SetEnv DOCKER_HOST={node.docker_host}", "",
        ]))
        if node.process is None or not node.running():
            raise ClusterError(f"{node.hostname} is stopped: no ssh server can start there")
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        with (folder / "sshd.log").open("ab") as log:
            process = subprocess.Popen(
                ["nsenter", f"--target={node.process.pid}", "--mount", "--uts", "--net", "--",
                 "sh", "-c", f'mkdir -p /run/sshd && exec "{sshd}" -D -e -f "{config}"'],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        try:
            def listening() -> bool:
                if process.poll() is not None:
                    raise ClusterError(f"sshd on {node.hostname} exited:\n{_tail(folder / 'sshd.log')}")
                with contextlib.suppress(OSError), socket.create_connection((node.address, 22), timeout=1):
                    return True
                return False

            wait_until(listening, 30, f"sshd on {node.hostname} to listen")
            yield f"ssh://root@{node.address}"
        finally:
            _stop(process)

    @property
    def host_address(self) -> str:
        """The host's own address on the cluster's network."""
        return str(self.subnet[254])

    def node(self, hostname: str) -> Node:
        """The node called `hostname`; raises KeyError for another name."""
        for node in self.nodes:
            if node.hostname == hostname:
                return node
        raise KeyError(hostname)

    def client(self, node: Node | None = None, timeout: int = 60) -> Any:
        """A Docker SDK client for `node`'s engine (default: the manager); close it when done."""
        import docker

        return docker.DockerClient(base_url=(node or self.manager).docker_host, version="auto", timeout=timeout)

    def node_id(self, node: Node) -> str:
        return self.node_ids[node.hostname]

    def node_state(self, node: Node) -> tuple[str, str]:
        """(state, availability) of `node` as the manager reports it, e.g. ("ready", "active")."""
        with contextlib.closing(self.client()) as manager:
            attrs = manager.api.inspect_node(self.node_id(node))
        return attrs["Status"]["State"], attrs["Spec"]["Availability"]

    def drain(self, node: Node) -> None:
        """Set `node` to drain: Swarm moves its tasks to other nodes."""
        self._availability(node, "drain")

    def activate(self, node: Node) -> None:
        """Undo `drain`: the node takes tasks again."""
        self._availability(node, "active")

    def stop_node(self, node: Node, kill: bool = False) -> None:
        """Stop `node`'s engine as a machine going down would: its containers stop with it.

        By default the engine shuts down cleanly (SIGTERM); `kill=True` kills it and everything it
        ran at once, as a lost machine. The swarm sees the node as down after its heartbeat
        period. Stopping the manager leaves the swarm without its only manager until it is back.
        """
        if node.process is None:
            return
        if kill:
            node.process.kill()
        else:
            node.process.terminate()
        try:
            node.process.wait(timeout=self.shutdown_timeout + 30)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait(timeout=30)
        self._kill_leftovers(node)
        node.process = None

    def start_node(self, node: Node, timeout: float = 60) -> None:
        """Start `node`'s engine again (it rejoins the swarm by itself) and wait until it answers."""
        if node.running():
            return
        self._launch(node)
        self._wait_for_engine(node, timeout)

    # -- making it ---------------------------------------------------------------------------------

    @classmethod
    def start(cls, root: Path, hidden: Path, storage_driver: str, size: int = 3) -> Cluster:
        """Make the whole cluster under the new folder `root` and return it, ready.

        Raises ClusterError (after removing whatever was made) when a step fails.
        """
        root, hidden = root.resolve(), hidden.resolve()
        if root == hidden or hidden in root.parents:
            raise ClusterError(f"the cluster's folder {root} lies under the folder hidden from the nodes, {hidden}")
        if not hidden.is_dir():
            raise ClusterError(f"the folder to hide from the nodes, {hidden}, is not a directory")
        root.mkdir(parents=True, exist_ok=True)
        record = {"prefix": f"nbdc{secrets.token_hex(3)}", "subnet": str(_free_subnet()), "size": size,
                  "hidden": str(hidden), "registry_port": _free_port(), "storage_driver": storage_driver,
                  "owner": _identity(os.getpid())}
        (root / RECORD).write_text(json.dumps(record))  # before anything is made: see remove_stale
        cluster = cls.from_record(root)
        try:
            cluster._make_tls()
            cluster._make_network()
            for node in cluster.nodes:
                cluster._configure(node)
                cluster._launch(node)
            cluster._start_registry()
            for node in cluster.nodes:
                cluster._wait_for_engine(node, 60)
            cluster._form_swarm()
        except BaseException:
            cluster.close()
            raise
        return cluster

    @classmethod
    def from_record(cls, root: Path) -> Cluster:
        """The cluster described by `root`'s record (its names, addresses and ports), not started."""
        record = json.loads((root / RECORD).read_text())
        prefix, subnet = record["prefix"], ipaddress.IPv4Network(record["subnet"])
        nodes = [
            Node(index, f"nbdock-node-{index}", str(subnet[index]), root / f"node{index}",
                 f"{prefix}-{index}", f"{prefix}-node{index}")
            for index in range(1, record["size"] + 1)
        ]
        for node in nodes:
            node.network_namespace = _namespace_inode_of(Path("/run/netns") / node.namespace)
        return cls(root, Path(record["hidden"]), subnet, prefix, nodes, record["registry_port"],
                   storage_driver=record["storage_driver"])

    @property
    def _bridge_namespace(self) -> str:
        return f"{self.prefix}-br"

    def _make_network(self) -> None:
        bridge = self._bridge_namespace
        _ip("netns", "add", bridge)
        _ip("-n", bridge, "link", "set", "lo", "up")
        _ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge, "link", "set", "br0", "up")
        # Bridged frames must not meet iptables: br_netfilter would apply a FORWARD policy to them.
        _ip("netns", "exec", bridge, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0", check=False)
        _ip("link", "add", self.prefix, "type", "veth", "peer", "name", "host", "netns", bridge)
        _ip("-n", bridge, "link", "set", "host", "master", "br0", "up")
        _ip("addr", "add", f"{self.host_address}/{self.subnet.prefixlen}", "dev", self.prefix)
        _ip("link", "set", self.prefix, "up")
        for node in self.nodes:
            _ip("netns", "add", node.namespace)
            _ip("-n", node.namespace, "link", "set", "lo", "up")
            port = f"node{node.index}"
            _ip("-n", bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node.namespace)
            _ip("-n", bridge, "link", "set", port, "master", "br0", "up")
            _ip("-n", node.namespace, "addr", "add", f"{node.address}/{self.subnet.prefixlen}", "dev", "eth0")
            _ip("-n", node.namespace, "link", "set", "eth0", "up")
            node.network_namespace = _namespace_inode_of(Path("/run/netns") / node.namespace)

    def _make_tls(self) -> None:
        """A CA, a server certificate for the manager's address and a client certificate (openssl)."""
        folder = self.root / "tls"
        folder.mkdir()

        def openssl(*arguments: str) -> None:
            completed = subprocess.run(["openssl", *arguments], cwd=folder, capture_output=True, text=True)
            if completed.returncode != 0:
                raise ClusterError(f"`openssl {' '.join(arguments)}` failed: {completed.stderr.strip()}")

        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-x509", *key, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "7",
                "-subj", "/CN=nbdock test cluster CA")
        for name, extensions in (("server", f"subjectAltName=IP:{self.manager.address}\nextendedKeyUsage=serverAuth"),
                                 ("client", "extendedKeyUsage=clientAuth")):
            (folder / f"{name}.ext").write_text(extensions + "\n")
            openssl("req", *key, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}")
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                    "-CAcreateserial", "-days", "7", "-extfile", f"{name}.ext", "-out", f"{name}-cert.pem")

    def _configure(self, node: Node) -> None:
        node.folder.mkdir()
        (node.folder / "cgroup").mkdir()
        # Nothing answers at this address: lookups of outside names fail instead of leaving.
        (node.folder / "resolv.conf").write_text(f"nameserver {self.subnet[253]}\noptions timeout:1 attempts:1\n")
        tls = self.root / "tls"
        listeners: dict[str, Any] = {"hosts": [node.docker_host]}
        if node is self.manager:
            listeners = {"hosts": [node.docker_host, self.manager_tls_host], "tlsverify": True,
                         "tlscacert": str(tls / "ca.pem"), "tlscert": str(tls / "server-cert.pem"),
                         "tlskey": str(tls / "server-key.pem")}
        node.config.write_text(json.dumps({
            "data-root": str(node.folder / "data"),
            "exec-root": "/run/docker",  # the node's private /run
            "pidfile": str(node.folder / "dockerd.pid"),
            **listeners,
            "deprecated-key-path": str(node.folder / "key.json"),
            "storage-driver": self.storage_driver,
            "cgroup-parent": node.cgroup_parent,
            "shutdown-timeout": self.shutdown_timeout,
            "log-level": "warn",
        }, indent=2))

    def _launch(self, node: Node) -> None:
        command = [
            "nsenter", f"--net=/run/netns/{node.namespace}", "--",
            "unshare", "--mount", "--uts", "--propagation", "private", "--",
            "sh", "-c", NODE_SCRIPT, "node",
            node.hostname, str(node.folder / "cgroup"), str(node.folder / "resolv.conf"), str(self.hidden),
            str(node.config),
        ]
        with node.log.open("ab") as log:
            node.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)

    def _wait_for_engine(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not node.running():
                raise ClusterError(f"the engine of {node.hostname} exited:\n{_tail(node.log)}")
            if node.socket.exists():
                with contextlib.suppress(Exception), contextlib.closing(self.client(node, timeout=5)) as client:
                    client.ping()
                    break
            if time.monotonic() > deadline:
                raise ClusterError(f"the engine of {node.hostname} did not answer within {timeout:.0f} s:\n"
                                   f"{_tail(node.log)}")
            time.sleep(0.1)
        assert node.process is not None
        if _namespace_inode(node.process.pid, "mnt") in (None, _namespace_inode("self", "mnt")):
            raise ClusterError(f"the engine of {node.hostname} does not run in a mount namespace of its own")

    def _start_registry(self) -> None:
        folder = self.root / "registry"
        folder.mkdir()
        config = folder / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {folder / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.registry}\n"
        )
        with (folder / "registry.log").open("ab") as log:
            self.registry_process = subprocess.Popen(["docker-registry", "serve", str(config)],
                                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        with (folder / "forwarder.log").open("ab") as log:
            self.forwarder_process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("forwarder.py")), str(self.registry_port),
                 *(f"/run/netns/{node.namespace}" for node in self.nodes)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            )
        assert self.forwarder_process.stdout is not None
        if self.forwarder_process.stdout.readline().strip() != b"ready":
            raise ClusterError(f"the registry's forwarder did not start:\n{_tail(folder / 'forwarder.log')}")
        wait_until(lambda: answers(f"http://{self.registry}/v2/"), 30, "the cluster's registry to answer")

    def _form_swarm(self) -> None:
        with contextlib.closing(self.client()) as manager:
            manager.swarm.init(advertise_addr=self.manager.address, listen_addr=f"{self.manager.address}:2377")
            token = manager.swarm.attrs["JoinTokens"]["Worker"]
            for node in self.nodes[1:]:
                with contextlib.closing(self.client(node)) as worker:
                    worker.swarm.join(remote_addrs=[f"{self.manager.address}:2377"], join_token=token,
                                      advertise_addr=node.address, listen_addr=f"{node.address}:2377")

            def all_ready() -> bool:
                listed = manager.nodes.list()
                self.node_ids = {n.attrs["Description"]["Hostname"]: n.id for n in listed}
                return len(listed) == len(self.nodes) and all(
                    n.attrs["Status"]["State"] == "ready" for n in listed)

            wait_until(all_ready, 60, "every node of the test cluster to be Ready")

    def _availability(self, node: Node, availability: str) -> None:
        with contextlib.closing(self.client()) as manager:
            found = manager.nodes.get(self.node_id(node))
            spec = dict(found.attrs["Spec"])
            spec["Availability"] = availability
            found.update(spec)

    # -- removing it -------------------------------------------------------------------------------

    def processes(self, node: Node) -> list[int]:
        """Every process of `node`: its engine, containerd, shims and storage helpers (all in the
        node's network namespace) and its containers (under its cgroup parent). Found by namespace
        and cgroup, never by name. The network namespace is the one `ip netns` holds for the node,
        so its inode cannot pass to another namespace while the cluster exists (a mount
        namespace's could, once its last process is gone)."""
        network = node.network_namespace
        if network == _namespace_inode("self", "net"):
            raise ClusterError(f"{node.hostname} claims the host's network namespace")
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            in_network = network is not None and _namespace_inode(entry, "net") == network
            if in_network or any(path == f"/{node.cgroup_parent}" or path.startswith(f"/{node.cgroup_parent}/")
                                 for path in _cgroups(entry)):
                found.append(int(entry))
        return found

    def _kill_leftovers(self, node: Node) -> None:
        deadline = time.monotonic() + 30
        while pids := self.processes(node):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise ClusterError(f"processes of {node.hostname} survive SIGKILL: {pids}")
            time.sleep(0.1)

    def _remove_cgroups(self, node: Node) -> None:
        for hierarchy in CGROUP_ROOT.iterdir():
            top = hierarchy / node.cgroup_parent
            if not top.is_dir():
                continue
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                                 reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    def _mounts_under_root(self) -> list[str]:
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        return [mount for mount in mounts if mount == str(self.root) or mount.startswith(f"{self.root}/")]

    def close(self) -> None:
        """Stop every engine, the registry and the forwarder; delete namespaces, veths, cgroups and
        data. Safe to call more than once and on a cluster that started only in part; every step
        is tried, and the first failure is raised at the end."""
        errors: list[Exception] = []

        def attempt(step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as error:
                errors.append(error)

        for node in self.nodes:  # all at once: each gives its containers shutdown_timeout
            if node.process is not None and node.running():
                node.process.terminate()
        for node in self.nodes:
            attempt(functools.partial(self.stop_node, node))
            attempt(functools.partial(self._kill_leftovers, node))
            attempt(functools.partial(self._remove_cgroups, node))
        for process in (self.forwarder_process, self.registry_process):
            if process is not None:
                attempt(functools.partial(_stop, process))
        self.forwarder_process = self.registry_process = None
        # Those of a session that ended without closing its cluster: the registry names its config
        # under the root, the forwarder the nodes' namespaces.
        for pid in _naming((f"{self.root}/", f"/run/netns/{self.prefix}-")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        namespaces = set(_ip("netns", "list").stdout.split())
        for name in [node.namespace for node in self.nodes] + [self._bridge_namespace]:
            if name in namespaces:
                attempt(functools.partial(_ip, "netns", "delete", name))
        # Deleting the bridge's namespace takes the host's veth with it, a moment later.
        attempt(lambda: wait_until(lambda: _ip("link", "show", self.prefix, check=False).returncode != 0, 30,
                                   "the test cluster's veth to go"))
        for mount in sorted(self._mounts_under_root(), key=len, reverse=True):  # none expected: all are private
            subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise errors[0]

    def leftovers(self) -> list[str]:
        """What of this cluster is still on the machine (empty after `close`)."""
        found = [f"netns {name}" for name in _ip("netns", "list").stdout.split() if name.startswith(self.prefix)]
        found += [f"link {self.prefix}"] if _ip("link", "show", self.prefix, check=False).returncode == 0 else []
        found += [f"folder {self.root}"] if self.root.exists() else []
        found += [f"cgroup {h / n.cgroup_parent}" for n in self.nodes for h in CGROUP_ROOT.iterdir()
                  if (h / n.cgroup_parent).exists()]
        for process in (self.registry_process, self.forwarder_process):
            if process is not None and process.poll() is None:
                found.append(f"process {process.pid}")
        return found


def remove_stale(parents: tuple[Path, ...] = (Path(tempfile.gettempdir()), Path("/var/tmp"))) -> list[Path]:
    """Remove every cluster whose session ended without closing it (killed, say), found by the
    record in its folder under `parents`; clusters of running sessions are left alone. The
    folders of the clusters removed."""
    removed = []
    for root in sorted(folder for parent in parents for folder in parent.glob("nbdock-cluster-*")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            owner = json.loads((root / RECORD).read_text())["owner"]
            if _identity(owner[0]) != owner:
                Cluster.from_record(root).close()
                removed.append(root)
    return removed


def unavailable(storage_driver: str) -> str | None:
    """Why no cluster can start on this machine (not root, commands missing), or None."""
    if os.geteuid() != 0:
        return "the test cluster needs root (network, mount and UTS namespaces, veths)"
    if missing := missing_tools(storage_driver):
        commands = ", ".join(f"{tool} (Debian package {package})" for tool, package in missing.items())
        return f"the test cluster needs these commands on PATH: {commands}"
    return None


def cluster_root(hidden: Path) -> Path:
    """A new, empty folder for a cluster's data: in the machine's temporary folder unless that lies
    under `hidden`, else in /var/tmp."""
    hidden = hidden.resolve()
    for parent in (Path(tempfile.gettempdir()), Path("/var/tmp")):
        parent = parent.resolve()
        if parent != hidden and hidden not in parent.parents:
            return Path(tempfile.mkdtemp(prefix="nbdock-cluster-", dir=parent))
    raise ClusterError(f"no folder for the cluster's data outside {hidden}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises KeyboardInterrupt, so that cleanups still run."""
    previous = signal.getsignal(signal.SIGTERM)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
