"""Secure defaults (#11 items 1-2): owner-only files here, a private probe directory there.

The attacks of issue #11 are replayed against real sshd as the unprivileged
``nmx-test`` login; the "other local user" who plants files is root, which
can put a file anywhere (the tests run as root).
"""

from __future__ import annotations

import configparser
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sshd
from conftest import Fleet, Run

from netmetrix import oneshot, probe, ssh
from netmetrix.config import HostConfig
from netmetrix.configxml import ConfigXml, Host, render
from netmetrix.errors import HostError
from netmetrix.store import Store

Cli = Callable[..., Run]

README = Path(__file__).resolve().parent.parent / "README.md"
SERVICE = Path(__file__).resolve().parent.parent / "contrib" / "netmetrix.service"


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, under which files would otherwise be created world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# ---------------------------------------------------------------- item 1: files here


def test_existing_readable_store_warns_once_per_run(tmp_path: Path, netmetrix: Cli) -> None:
    config = tmp_path / "config.xml"
    config.write_text(render(ConfigXml(hosts=[Host(name="f4")])))
    assert netmetrix("--config", config, "hosts").code == 0
    database = tmp_path / "netmetrix.db"
    database.chmod(0o644)  # as an older netmetrix left it under umask 022
    ran = netmetrix("--config", config, "hosts")
    assert ran.code == 0
    warnings = [line for line in ran.err.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, ran.err
    assert warnings[0].endswith(
        f" WARNING database {database} (mode 0644) can be read by other users, and it holds"
        f" every host's key: run chmod 600 {database}"
    )


def test_systemd_unit_keeps_the_state_directory_private() -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    text = SERVICE.read_text(encoding="utf-8")
    parser.read_string(text, source=SERVICE.name)
    assert parser["Service"]["UMask"] == "0077"
    assert parser["Service"]["StateDirectoryMode"] == "0700"
    assert f"```ini\n{text}```" in README.read_text(encoding="utf-8")  # shown verbatim


@pytest.mark.usefixtures("umask_022")
def test_accept_new_writes_an_owner_only_known_hosts(fleet: Fleet, netmetrix: Cli) -> None:
    fleet.settings["policy"] = "accept-new"
    fleet.known_hosts.unlink()
    fleet.host("f1", 0)
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 0, ran.err
    assert "Permanently added host key" in ran.err
    assert mode_of(fleet.known_hosts) == 0o600


@pytest.mark.usefixtures("umask_022")
def test_demo_keeps_its_files_private(tmp_path: Path, netmetrix: Cli) -> None:
    keep = tmp_path / "demo"
    ran = netmetrix("demo", "--hosts", "1", "--keep", keep)
    assert ran.code == 0, ran.err
    modes = {path.name: mode_of(path) for path in keep.iterdir()}
    assert mode_of(keep) == 0o700
    assert modes == {
        "config.xml": 0o644,  # no secrets: the SMTP password would come from the environment
        "demo_key": 0o600,
        "demo_key.pub": 0o644,
        "known_hosts": 0o600,
        "netmetrix.db": 0o600,
        "netmetrix.db.upload-lock": 0o600,  # says which process is uploading (#11)
    }


# ---------------------------------------------------------------- item 2: the probe's directory

SFTP, EXEC = 0, 2  # farm servers: the third has no SFTP subsystem, so upload pipes over exec
TRANSPORTS = [pytest.param(SFTP, "sftp", id="sftp"), pytest.param(EXEC, "exec", id="exec")]
REFUSED_HINT = (
    " — another user could plant or change it; remove it, keep <host directory> private"
    " to the login user (default ~/.cache/netmetrix), then run upload"
)


def as_test_user(fleet: Fleet, user: sshd.User, directory: str, server: int = SFTP) -> None:
    """Host "h": the unprivileged login, its system python, the probe in ``directory``."""
    fleet.host("h", server, user=user.name, python=user.python, directory=directory)


def collector_id(fleet: Fleet) -> str:
    """The fleet store's collector id (making the store): it names the key and state files."""
    with Store.open(f"sqlite:///{fleet.database}") as store:
        return store.collector_id()


def stored(fleet: Fleet, metric: str) -> list[float]:
    with Store.open(f"sqlite:///{fleet.database}") as store:
        return [s.value for s in store.history("h", metric)]


def forged_state() -> str:
    """A state file making the next run report cpu_percent 99.98, as in issue #11.

    Its counters are this host's, as of now: the CPU as if it had been
    99.98% busy for 10^9 jiffies, every other counter at 0 (so the probe
    accepts it as a baseline).
    """
    counters = probe._linux_counters("/", [])
    total, busy = counters["cpu"]["all"]
    counters["cpu"]["all"] = [total - 10**9, busy - 999_800_000]
    for group in ("net", "disk"):
        counters[group] = {name: [0, 0] for name in counters.get(group, {})}
    uptime = probe.parse_uptime(Path("/proc/uptime").read_text())
    state = {"v": probe.STATE_VERSION, "kind": "linux", "time": time.time() - 5}
    state.update(uptime=uptime - 5, counters=counters)
    return json.dumps(state)


def test_the_default_directory_is_the_login_users_cache() -> None:
    host = HostConfig(name="h")
    assert host.directory == "~/.cache/netmetrix"
    assert oneshot.remote_path(host, "client.py") == "~/.cache/netmetrix/client.py"
    challenge = "ab" * 16  # the "~" never reaches the shell, where quoting would keep it literal
    command = oneshot.probe_command(host, "client.py", challenge, 30.0, collector="c0ffee42")
    assert command.endswith(f" python3 .cache/netmetrix/client.py {challenge} c0ffee42")
    assert "~" not in command


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize(("server", "transport"), TRANSPORTS)
def test_upload_makes_a_private_directory_in_the_home(
    fleet: Fleet, netmetrix: Cli, test_user: sshd.User, user_dir: Path, server: int, transport: str
) -> None:
    """A "~/..." directory, like the default, is made 0700 in the login user's home."""
    directory = f"~/{user_dir.relative_to(test_user.home)}/.cache/netmetrix"
    as_test_user(fleet, test_user, directory, server)
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 0, ran.err
    assert f"[h] SUCCESS! Script `{directory}/client.py` uploaded ({transport})" in ran.err
    made = user_dir / ".cache" / "netmetrix"
    cid = collector_id(fleet)
    for path, mode in [
        (user_dir / ".cache", 0o700),
        (made, 0o700),
        (made / "client.py", 0o700),
        (made / f"client.py.{cid}.key", 0o600),
    ]:
        assert (mode_of(path), path.lstat().st_uid) == (mode, test_user.uid), path

    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 0, ran.err
    assert f"[h] SUCCESS! Script `{directory}/client.py` executed" in ran.err
    state = made / f"client.py.{cid}.state"
    assert (mode_of(state), state.lstat().st_uid) == (0o600, test_user.uid)
    assert stored(fleet, "up") == [1.0]


def plant(path: Path, attack: str, user: sshd.User) -> str:
    """Make ``path`` what another user left there; return the probe's reason to refuse it."""
    if attack == "root's":
        path.write_text(forged_state())
        path.chmod(0o644)
        return f"owned by uid 0, not by uid {user.uid} that runs the probe"
    if attack == "symlink":
        target = path.with_name("forged")
        target.write_text(forged_state())
        target.chmod(0o644)
        path.symlink_to(target)
        return "is a symbolic link"
    if attack == "group-writable":
        if not path.exists():
            path.write_text(forged_state())
        os.chown(path, user.uid, user.gid)
        path.chmod(0o664 if path.name != "client.py" else 0o775)
        return f"writable by group/others (mode {mode_of(path):04o})"
    assert attack == "readable"  # the key: readable is enough to forge
    path.chmod(0o644)
    return "readable or writable by group/others (mode 0644)"


@pytest.mark.parametrize(
    ("name", "attack"),
    [
        ("client.py.{id}.state", "root's"),
        ("client.py.{id}.state", "symlink"),
        ("client.py.{id}.state", "group-writable"),
        ("client.py.{id}.key", "readable"),
        ("client.py", "group-writable"),
    ],
)
def test_probe_refuses_files_another_user_controls(
    fleet: Fleet, netmetrix: Cli, test_user: sshd.User, user_dir: Path, name: str, attack: str
) -> None:
    as_test_user(fleet, test_user, str(user_dir))
    assert netmetrix("--config", fleet.config, "upload").code == 0
    path = user_dir / name.format(id=collector_id(fleet))  # the checks apply to these names too
    reason = plant(path, attack, test_user)

    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert f"ERROR [h] FAILED: probe refused {path}: {reason}{REFUSED_HINT}\n" in ran.err
    assert stored(fleet, "cpu_percent") == []  # nothing of the forgery, nor anything else
    assert stored(fleet, "up") == [0.0]

    if name.endswith(".state"):  # the same content as the login's own file is believed:
        content = path.read_text()  # so the refusal above is what stopped the forgery
        path.unlink()
        path.write_text(content)
        os.chown(path, test_user.uid, test_user.gid)
        path.chmod(0o600)
        ran = netmetrix("--config", fleet.config, "execute")
        assert ran.code == 0, ran.err
        assert stored(fleet, "cpu_percent") == [pytest.approx(99.98, abs=0.01)]


@pytest.fixture
def shared_dir(user_dir: Path) -> Path:
    """A directory like /tmp: root's, world-writable, sticky."""
    path = user_dir / "shared"
    path.mkdir()
    path.chmod(0o1777)
    return path


def test_a_state_planted_in_a_shared_directory_is_refused(
    fleet: Fleet, netmetrix: Cli, test_user: sshd.User, shared_dir: Path
) -> None:
    """Issue #11's attack: another user pre-creates client.py.<id>.state in /tmp."""
    state = shared_dir / f"client.py.{collector_id(fleet)}.state"
    reason = plant(state, "root's", test_user)
    as_test_user(fleet, test_user, str(shared_dir))
    assert netmetrix("--config", fleet.config, "upload").code == 0  # sticky: our files are ours
    ran = netmetrix("--config", fleet.config, "execute")
    assert ran.code == 1
    assert f"ERROR [h] FAILED: probe refused {state}: {reason}{REFUSED_HINT}\n" in ran.err
    assert stored(fleet, "cpu_percent") == []


@pytest.mark.parametrize(("server", "transport"), TRANSPORTS)
def test_upload_refuses_to_replace_another_users_file_in_a_shared_directory(
    fleet: Fleet,
    netmetrix: Cli,
    test_user: sshd.User,
    shared_dir: Path,
    server: int,
    transport: str,
) -> None:
    """It could not replace it anyway (sticky); it says why, and what to do."""
    key_name = f"client.py.{collector_id(fleet)}.key"
    planted = shared_dir / key_name
    planted.write_text("root's\n")
    as_test_user(fleet, test_user, str(shared_dir), server)
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    assert (
        f"ERROR [h] FAILED: upload to {shared_dir} refused: {key_name} there belongs to"
        f" uid 0, not to the login user (uid {test_user.uid}), and cannot be replaced in a"
        " directory shared with other users; remove it, or use a private <host directory>"
        " (the default ~/.cache/netmetrix)\n"
    ) in ran.err
    assert planted.read_text() == "root's\n"
    assert sorted(p.name for p in shared_dir.iterdir()) == ["client.py", key_name]


@pytest.mark.parametrize(("server", "transport"), TRANSPORTS)
@pytest.mark.parametrize(
    ("mode", "owner", "problem"),
    [
        pytest.param(
            0o777,
            None,
            "the directory is writable by other users (drwxrwxrwx), who could swap the probe"
            " for their own code; chmod go-w it, or use a private directory (the default"
            " ~/.cache/netmetrix)",
            id="world-writable",
        ),
        pytest.param(
            0o770,
            None,
            "the directory is writable by other users (drwxrwx---), who could swap the probe"
            " for their own code; chmod go-w it, or use a private directory (the default"
            " ~/.cache/netmetrix)",
            id="group-writable",
        ),
        pytest.param(
            0o1777,
            65534,
            "the directory belongs to uid 65534, not to the login user (uid {uid}) or root",
            id="another-users-sticky",
        ),
    ],
)
def test_upload_refuses_a_directory_others_can_change(
    fleet: Fleet,
    netmetrix: Cli,
    test_user: sshd.User,
    user_dir: Path,
    server: int,
    transport: str,
    mode: int,
    owner: int | None,
    problem: str,
) -> None:
    if owner is not None:
        os.chown(user_dir, owner, owner)
    user_dir.chmod(mode)
    as_test_user(fleet, test_user, str(user_dir), server)
    ran = netmetrix("--config", fleet.config, "upload")
    assert ran.code == 1
    expected = problem.format(uid=test_user.uid)
    assert f"ERROR [h] FAILED: upload to {user_dir} refused: {expected}\n" in ran.err
    assert not (user_dir / "client.py").exists()
    assert [p.name for p in user_dir.iterdir()] == []  # no temporary file left either


def test_a_host_faking_the_refusal_line_gets_a_host_error() -> None:
    """stderr is the host's to write: a bare prefix is still one clear host error."""
    done = ssh.Completed(probe.EXIT_UNSAFE, "", f"noise\n{probe.UNSAFE_PREFIX}")
    with pytest.raises(HostError) as caught:
        oneshot.check_exit(HostConfig(name="h"), "client.py", "c0ffee42", done)
    assert str(caught.value).startswith("probe refused  — another user could plant")
