"""Unit tests that need no root: the spec, the environment, the seccomp filter's shape, cgroup placement."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from clawfleet.sandbox import cgroups, environment, landlock, seccomp_filter
from clawfleet.sandbox.spec import SandboxSpec, SpecError


def _spec(**kw):
    base = dict(argv=("/bin/true",), workdir="/srv/work", uid=1000, gid=1000, user="agent")
    base.update(kw)
    return SandboxSpec(**base)


@pytest.mark.parametrize(
    "kw",
    [
        {"uid": 0},
        {"gid": 0},
        {"argv": ()},
        {"workdir": "/"},
        {"workdir": "relative"},
        {"read_only": ("relative",)},
        {"read_only": ("/usr/../etc",)},
        {"read_write": ("/",)},
        {"read_only": ("/",)},
        {"landlock_compat": "sometimes"},
        {"mode": "audit"},
        {"pids_max": 0},
    ],
)
def test_spec_refuses(kw):
    with pytest.raises(SpecError):
        _spec(**kw)


def test_environment_is_an_allowlist_with_placeholders():
    host = {"PATH": "/evil", "LANG": "C.UTF-8", "LC_ALL": "C", "AWS_SECRET_ACCESS_KEY": "x", "SSH_AUTH_SOCK": "/s",
            "HOME": "/root", "TERM": "xterm"}  # fmt: skip
    env = environment.build(host, "agent", explicit={"FOO": "bar"}, credentials=["OPENAI_API_KEY"])
    assert env == {
        "PATH": environment.DEFAULT_PATH, "HOME": "/sandbox", "USER": "agent", "LOGNAME": "agent",
        "SHELL": "/bin/sh", "LANG": "C.UTF-8", "LC_ALL": "C", "TERM": "xterm", "FOO": "bar",
        "OPENAI_API_KEY": "openshell:resolve:env:OPENAI_API_KEY",
    }  # fmt: skip
    with pytest.raises(environment.EnvError):
        environment.build({}, "agent", explicit={"GITHUB_TOKEN": "ghp_real"})
    ok = environment.build({}, "agent", explicit={"GITHUB_TOKEN": "openshell:resolve:env:GITHUB_TOKEN"})
    assert ok["GITHUB_TOKEN"].startswith("openshell:")


def test_display_env_carries_terminal_and_locale_only():
    # `sandbox connect` lays the operator's display settings over the agent's environment: nothing that changes
    # where traffic goes, what is trusted, what is loaded or who the caller is may come along.
    caller = {"TERM": "xterm-256color", "COLORTERM": "truecolor", "LANG": "C.UTF-8", "LC_CTYPE": "C", "TZ": "UTC",
              "NO_COLOR": "1", "HTTPS_PROXY": "http://evil:1", "SSL_CERT_FILE": "/evil.pem", "LD_PRELOAD": "/x.so",
              "PATH": "/evil", "HOME": "/root", "SSH_AUTH_SOCK": "/s", "OPENAI_API_KEY": "sk-real"}  # fmt: skip
    shown = {"TERM": "xterm-256color", "COLORTERM": "truecolor", "LANG": "C.UTF-8", "LC_CTYPE": "C", "TZ": "UTC",
             "NO_COLOR": "1"}  # fmt: skip
    assert environment.display_env(caller) == shown


def _pfc(machine: str | None = None) -> str:
    f = seccomp_filter.build(machine)
    with tempfile.TemporaryFile("w+") as out:
        f.export_pfc(out)
        out.seek(0)
        return out.read()


def test_seccomp_filter_shape():
    import pyseccomp

    pfc = _pfc()
    for name in ("ptrace", "bpf", "keyctl", "add_key", "request_key", "kexec_load", "init_module", "finit_module",
                 "io_uring_setup", "memfd_create", "fsopen", "open_tree", "move_mount", "setns", "userfaultfd",
                 "perf_event_open", "pidfd_getfd", "process_vm_writev"):  # fmt: skip
        assert f'syscall "{name}"' in pfc, name
    assert "action ERRNO(38);" in pfc  # clone3 -> ENOSYS
    unknown = [n for n in range(424, 512) if not seccomp_filter._known(pyseccomp, pyseccomp.Arch.NATIVE, n)]
    assert all(f"if ($syscall == {n})\n    action ERRNO(38);" in pfc for n in unknown)  # newer: ENOSYS
    assert "# invalid architecture action\naction KILL_PROCESS;" in pfc
    # ioctl's request is compared on its low 32 bits only (masked), so high bits cannot dodge it
    ioctl = pfc[pfc.index('syscall "ioctl"') :].split("# filter for syscall", 1)[0]
    assert "$a1.lo32 & 0xffffffff == 21522" in ioctl  # TIOCSTI
    assert "$a1.hi32 & 0x00000000 == 0" in ioctl
    assert pfc.count("# filter for arch") == 1  # native only: every other ABI is a bad arch


@pytest.mark.parametrize(("machine", "audit_arch"), [("x86_64", 3221225534), ("aarch64", 3221225655)])
def test_seccomp_filter_for_each_supported_architecture(machine, audit_arch):
    # Built from names through libseccomp's table for that architecture: no x86_64 number leaks into the
    # aarch64 filter (DGX Spark), and syscalls the architecture never had are simply absent.
    pfc = _pfc(machine)
    assert f"# filter for arch {machine} ({audit_arch})" in pfc and pfc.count("# filter for arch") == 1
    assert 'syscall "io_uring_setup"' in pfc and 'syscall "clone3"' in pfc and 'syscall "ioctl"' in pfc
    assert ('syscall "iopl"' in pfc) == (machine == "x86_64")
    assert "# invalid architecture action\naction KILL_PROCESS;" in pfc


def test_landlock_abi_features():
    assert landlock.handled_fs(1) == (1 << 13) - 1
    assert landlock.handled_fs(2) & landlock.FS_REFER and not landlock.handled_fs(2) & landlock.FS_TRUNCATE
    assert landlock.handled_fs(5) & landlock.FS_IOCTL_DEV
    assert landlock.scoped(5) == 0 and landlock.scoped(6) == 3
    assert landlock.missing_features(7) == []
    assert len(landlock.missing_features(0)) == 5
    assert landlock.Plan(4, tuple(landlock.missing_features(4))).refusal("hard_requirement")
    assert landlock.Plan(4, tuple(landlock.missing_features(4))).refusal("best_effort") is None
    assert landlock.Plan(7, ()).refusal("hard_requirement") is None


def _fake_tree(root, mountinfo: str, cgroup: str, files: dict[str, str]):
    os.makedirs(os.path.join(root, "proc/self"))
    with open(os.path.join(root, "proc/self/mountinfo"), "w") as f:
        f.write(mountinfo)
    with open(os.path.join(root, "proc/self/cgroup"), "w") as f:
        f.write(cgroup)
    for rel, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)


def test_cgroup_v2_placement(tmp_path):
    root = str(tmp_path)
    _fake_tree(root, "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/system.slice/x.service\n",
               {"sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n",
                "sys/fs/cgroup/cgroup.subtree_control": "cpu\n",
                "sys/fs/cgroup/clawfleet/cgroup.subtree_control": ""})  # fmt: skip
    cg = cgroups.create(64 << 20, 100, root=root)
    (d,) = cg.dirs
    assert os.path.dirname(d) == os.path.join(root, "sys/fs/cgroup/clawfleet") and cg.version == "v2"
    assert Path(d, "memory.max").read_text() == str(64 << 20)
    assert Path(d, "pids.max").read_text() == "100"
    # controllers are enabled for the children (a real cgroupfs merges "+memory +pids" into the list)
    assert Path(root, "sys/fs/cgroup/clawfleet/cgroup.subtree_control").read_text() == "+memory +pids"


def test_cgroup_hybrid_uses_v1_under_our_own_group(tmp_path):
    root = str(tmp_path)
    mountinfo = ("30 23 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
                 "31 23 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
                 "32 23 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")  # fmt: skip
    _fake_tree(root, mountinfo, "8:pids:/\n4:memory:/process_api/abc\n0::/\n",
               {"sys/fs/cgroup/unified/cgroup.controllers": ""})  # fmt: skip
    layout = cgroups.detect(root)
    assert layout.version == "hybrid" and layout.v2_controllers == frozenset()
    cg = cgroups.create(1 << 30, 50, root=root, layout=layout)
    mem, pids = sorted(cg.dirs)
    assert "/sys/fs/cgroup/memory/process_api/abc/clawfleet/sandbox-" in mem
    assert "/sys/fs/cgroup/pids/clawfleet/sandbox-" in pids
    assert Path(mem, "memory.limit_in_bytes").read_text() == str(1 << 30)


def test_cgroup_without_controller_fails_closed(tmp_path):
    root = str(tmp_path)
    _fake_tree(root, "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/\n",
               {"sys/fs/cgroup/cgroup.controllers": "cpu\n"})  # fmt: skip
    with pytest.raises(cgroups.CgroupError, match="no memory controller"):
        cgroups.create(1 << 30, None, root=root)
    assert cgroups.create(None, None, root=root).dirs == []


def test_cli_size_parser():
    from clawfleet.sandbox.run_args import size_arg as _size

    assert _size("4G") == 4 << 30 and _size("96M") == 96 << 20 and _size("512MiB") == 512 << 20
    assert _size("1000") == 1000


def test_seccomp_inet_protocol_gaps_match_exactly_the_denied_numbers():
    blocks = seccomp_filter._gaps(seccomp_filter.INET_PROTOCOLS)
    top = max(seccomp_filter.INET_PROTOCOLS)
    denied = {n for n in range(1024) if n > top or any(n & mask == value for value, mask in blocks)}
    assert denied == set(range(1024)) - set(seccomp_filter.INET_PROTOCOLS)
    for machine in ("x86_64", "aarch64"):
        assert seccomp_filter.build(machine) is not None  # libseccomp accepts the rules on both


def test_host_paths_resolve_only_through_symlinks_the_sandbox_user_cannot_plant(tmp_path):
    from clawfleet.sandbox import namespaces

    other = 2**31 - 7  # a uid/gid that owns nothing here
    real = os.path.realpath(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    # Root's symlinks elsewhere are followed like realpath does; "..", "." and missing tails are kept right.
    assert namespaces._resolve_host("/lib/./x/..", other, other) == os.path.realpath("/lib")
    assert namespaces._resolve_host("/usr/bin/../lib", other, other) == os.path.realpath("/usr/lib")
    assert namespaces._resolve_host(f"{real}/real/missing/y", other, other) == f"{real}/real/missing/y"
    # Below a world-writable directory (/tmp) anyone, the sandbox user too, could have made the link.
    assert namespaces._resolve_host(f"{real}/link", other, other) is None
    assert namespaces._resolve_host(f"{real}/link/x", other, other) is None
    # A link the sandbox user owns is refused wherever it is.
    st = os.lstat(tmp_path / "link")
    assert namespaces._writable_by(os.stat(tmp_path), st.st_uid, other)


def test_directories_leading_to_a_bind_are_searchable_under_a_strict_umask(tmp_path):
    """The sandbox unit runs with UMask=0077: /opt and /opt/clawfleet, made to hold the bind of a read-only
    /opt/clawfleet/openclaw, must still let the sandbox user through (it got EACCES executing OpenClaw)."""
    from clawfleet.sandbox import namespaces

    tmp_path.chmod(0o700)  # a directory that exists already keeps its own mode
    old = os.umask(0o077)
    try:
        namespaces._make_mountpoint(str(tmp_path / "opt" / "clawfleet" / "openclaw"), directory=True)
        namespaces._make_mountpoint(str(tmp_path / "opt" / "clawfleet" / "file"), directory=False)
    finally:
        os.umask(old)
    assert (tmp_path / "opt").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "opt" / "clawfleet").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "opt" / "clawfleet" / "openclaw").is_dir()
    assert (tmp_path / "opt" / "clawfleet" / "file").is_file()
    assert tmp_path.stat().st_mode & 0o777 == 0o700
