"""Finding the host's apt mirror and release for `invoke base`."""

from __future__ import annotations

from pathlib import Path

from nbdock.baseimage import host_mirror, host_suite


def test_the_suite_comes_from_os_release(tmp_path: Path) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12"\nVERSION_CODENAME=bookworm\n')
    assert host_suite(os_release) == "bookworm"
    assert host_suite(tmp_path / "missing") is None


def test_the_mirror_comes_from_deb822_sources(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    (sources / "other.list").write_text("deb [arch=amd64] https://vendor.example/apt stable main\n")
    assert host_mirror("bookworm", [tmp_path / "sources.list", sources]) == "http://mirror.example/debian"
    assert host_mirror("trixie", [sources]) is None


def test_the_mirror_comes_from_one_line_sources(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [signed-by=/k.gpg] http://ftp.example/debian bookworm main\n"
    )
    assert host_mirror("bookworm", [sources]) == "http://ftp.example/debian"
