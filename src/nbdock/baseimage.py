"""A local base image with Python, built from Debian packages, for machines that cannot pull.

mmdebstrap (or debootstrap) installs a minimal system from the host's own apt mirror into a
tar archive, and the engine imports it as an image: no container registry is involved.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from nbdock import console, engine
from nbdock.errors import NbdockError

if TYPE_CHECKING:
    from docker import DockerClient

PACKAGES = ("python3", "python3-venv", "ca-certificates")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
OS_RELEASE = Path("/etc/os-release")
# Documentation and translations are of no use in an image; leaving them out saves ~50 MB.
LEFT_OUT_PATHS = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")


def host_suite(os_release: Path = OS_RELEASE) -> str | None:
    """The host's release code name (bookworm, trixie, jammy...) from /etc/os-release."""
    if not os_release.is_file():
        return None
    for line in os_release.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    return None


def _source_entries(path: Path) -> Iterable[tuple[list[str], list[str]]]:
    """(URIs, suites) of each entry of an apt sources file, one-line or deb822 format."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".sources":
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split():
                yield fields.get("uris", "").split(), fields.get("suites", "").split()
        return
    for line in text.splitlines():
        words = [word for word in line.split("#", 1)[0].split() if not word.startswith("[")]
        if len(words) >= 3 and words[0] == "deb":
            yield [words[1]], [words[2]]


def host_mirror(suite: str, sources: Iterable[Path] = APT_SOURCES) -> str | None:
    """The first mirror in the host's apt sources that serves `suite`."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(p for p in source.iterdir() if p.suffix in {".list", ".sources"})
        elif source.is_file():
            files.append(source)
    for path in files:
        for uris, suites in _source_entries(path):
            if suite in suites and uris:
                return uris[0]
    return None


def _bootstrap_command(tool: str, suite: str, mirror: str, target: Path) -> list[str]:
    include = ",".join(PACKAGES)
    if Path(tool).name == "mmdebstrap":
        excludes = [f"--dpkgopt=path-exclude={path}" for path in LEFT_OUT_PATHS]
        return [tool, "--variant=minbase", f"--include={include}", *excludes, suite, str(target),
                mirror]
    return [tool, "--variant=minbase", f"--include={include}", suite, str(target), mirror]


def build_base(client: DockerClient, tag: str, suite: str, mirror: str) -> str:
    """Bootstrap `suite` from `mirror` and import it into the engine as `tag`; the image id."""
    tool = shutil.which("mmdebstrap") or shutil.which("debootstrap")
    if tool is None:
        raise NbdockError(
            "building a base image needs mmdebstrap or debootstrap and neither is installed; "
            "install one (`sudo apt-get install mmdebstrap`) and run `invoke base` again"
        )
    with tempfile.TemporaryDirectory(prefix="nbdock-base-") as scratch:
        archive = Path(scratch) / "rootfs.tar"
        is_mmdebstrap = Path(tool).name == "mmdebstrap"
        target = archive if is_mmdebstrap else Path(scratch) / "rootfs"
        command = _bootstrap_command(tool, suite, mirror, target)
        console.info(f"Bootstrapping Debian {suite} from {mirror} with {Path(tool).name}")
        if subprocess.run(command).returncode != 0:
            raise NbdockError(
                f"{Path(tool).name} could not bootstrap {suite} from {mirror} (its output is "
                "above); check the suite name and set BASE_MIRROR in .env to a reachable mirror"
            )
        if not is_mmdebstrap:
            subprocess.run(["tar", "--numeric-owner", "-C", str(target), "-cf", str(archive), "."],
                           check=True)
        repository, _, version = tag.partition(":")
        console.info(f"Importing {archive.stat().st_size / 2**20:.0f} MiB as {tag}")
        with engine.translated(f"importing the base image {tag}"):
            client.api.import_image(
                src=str(archive), repository=repository, tag=version or "latest",
                changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]', f"LABEL io.nbdock.base={suite}"],
            )
    image = engine.image_attrs(client, tag)
    if image is None:
        raise NbdockError(f"the engine did not keep the imported image {tag}; run `invoke base` again")
    return str(image["Id"])
