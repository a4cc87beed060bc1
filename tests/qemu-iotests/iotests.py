"""iotests.py: helpers for blockd's Python iotests.

A test is a script run by ./check with TEST_DIR (scratch, also the cwd),
SOCK_DIR (short directory for UNIX sockets) and BLOCKD_PROG in the
environment.  Everything it prints is compared with its golden NNN.out, so
this module prints only deterministic text: JSON with sorted keys and
timestamps, scratch paths and versions replaced by fixed words.

Typical use:

    import iotests
    vm = iotests.Daemon().launch()      # blockd with one negotiated monitor
    vm.qmp_log('query-version')
    vm.shutdown()

Daemons still running at exit are shut down by an atexit handler, which
also reports a nonzero exit status or valgrind errors as test output.
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))), 'scripts', 'qmp'))
from qmp import (QMPClient, QMPError, QMPConnectError,  # noqa: E402,F401
                 QMPProtocolError, QMPTimeoutError)

SKIP_STATUS = 77
test_dir = os.environ.get('TEST_DIR', os.getcwd())
sock_dir = os.environ.get('SOCK_DIR', test_dir)
iotests_dir = os.environ.get('QEMU_IOTESTS_DIR',
                             os.path.dirname(os.path.abspath(__file__)))
src_dir = os.environ.get('BLOCKD_SRC',
                         os.path.dirname(os.path.dirname(iotests_dir)))
build_dir = os.environ.get('BLOCKD_BUILD', os.path.join(src_dir, 'build'))
blockd_prog = os.environ.get('BLOCKD_PROG',
                             os.path.join(build_dir, 'storage-daemon', 'blockd'))
blockd_img_prog = os.environ.get('BLOCKD_IMG_PROG',
                                 os.path.join(build_dir, 'tools', 'blockd-img'))
blockd_io_prog = os.environ.get('BLOCKD_IO_PROG',
                                os.path.join(build_dir, 'tools', 'blockd-io'))
valgrind = os.environ.get('BLOCKD_VALGRIND') == '1'
VALGRIND_ARGS = ['valgrind', '--error-exitcode=99', '--leak-check=full',
                 '--errors-for-leak-kinds=definite', '-q']
VALGRIND_STATUS = 99
# Valgrind makes start-up and every command much slower.
TIMEOUT = 300.0 if valgrind else 60.0


# ---- output and filters ---------------------------------------------------

def filter_path(text):
    """Replace the scratch and socket directories with TEST_DIR / SOCK_DIR."""
    for path, word in ((sock_dir, 'SOCK_DIR'), (test_dir, 'TEST_DIR')):
        if path:
            text = text.replace(path, word)
    return text


def filter_blockd(text):
    """Replace the blockd program path with 'blockd'."""
    return text.replace(blockd_prog, 'blockd')


def filter_valgrind_notes(text):
    """Drop valgrind's '--PID-- ' notes (e.g. an unhandled syscall that
    blockd falls back from); its error reports ('==PID== ') stay."""
    return re.sub(r'(?m)^--\d+-- .*\n?', '', text)


def filter_text(text):
    return filter_valgrind_notes(filter_blockd(filter_path(text)))


def _is_version_info(obj):
    return isinstance(obj, dict) and 'qemu' in obj and \
        isinstance(obj['qemu'], dict) and 'major' in obj['qemu']


def filter_qmp(obj):
    """Return a copy of a QMP message with variable parts replaced.

    timestamp -> {"seconds": "SECS", "microseconds": "USECS"}; a version
    object ({"qemu": {...}, "package": ...}, in the greeting and in
    query-version) -> "VERSION"; paths -> TEST_DIR / SOCK_DIR.
    """
    if isinstance(obj, dict):
        if _is_version_info(obj):
            return 'VERSION'
        out = {}
        for key, value in obj.items():
            if key == 'timestamp' and isinstance(value, dict):
                out[key] = {'seconds': 'SECS', 'microseconds': 'USECS'}
            else:
                out[key] = filter_qmp(value)
        return out
    if isinstance(obj, list):
        return [filter_qmp(v) for v in obj]
    if isinstance(obj, str):
        return filter_text(obj)
    return obj


def dumps(obj):
    """Compact, sorted JSON as printed in golden files."""
    return json.dumps(obj, sort_keys=True)


def format_request(req):
    """A request as logged: execute first, then arguments (sorted), id."""
    parts = [f'"execute": {dumps(req["execute"])}']
    for key in ('arguments', 'id'):
        if key in req:
            parts.append(f'"{key}": {dumps(filter_qmp(req[key]))}')
    return '{' + ', '.join(parts) + '}'


def log(msg, filters=(filter_text,)):
    """Print a string or a JSON value (sorted keys, QMP-filtered)."""
    if isinstance(msg, (dict, list)):
        text = dumps(filter_qmp(msg))
    else:
        text = str(msg)
        for f in filters:
            text = f(text)
    print(text, flush=True)


def notrun(reason):
    """Skip the test: print 'SKIP: reason' and exit with status 77."""
    print(f'SKIP: {reason}', flush=True)
    sys.exit(SKIP_STATUS)


def skip_if_missing(prog):
    """Skip unless prog (a name on PATH or a path) is executable."""
    if os.sep in prog:
        found = os.access(prog, os.X_OK)
    else:
        found = shutil.which(prog) is not None
    if not found:
        notrun(f'{os.path.basename(prog)} not found')


def main(fn):
    """Run fn(); an uncaught exception is printed (so the test fails)."""
    try:
        fn()
    except SystemExit:
        raise
    except BaseException:
        print(filter_text(traceback.format_exc()), flush=True)
        sys.exit(1)
    return fn


def blockd_version():
    """The project version from meson.build (what blockd should report)."""
    with open(os.path.join(src_dir, 'meson.build'), encoding='utf-8') as f:
        m = re.search(r"version:\s*'([^']+)'", f.read())
    return m.group(1) if m else None


def wire_version():
    """The version object exactly as blockd should put it on the wire."""
    ver = blockd_version()
    major, minor, micro = (int(x) for x in ver.split('.')[:3])
    return (f'{{"qemu": {{"major": {major}, "minor": {minor}, '
            f'"micro": {micro}}}, "package": "blockd {ver}"}}')


def filter_wire_version(text):
    """Replace the exact wire form of blockd's version object by VERSION."""
    return text.replace(wire_version(), 'VERSION')


def blockd_argv(args):
    """argv to run blockd with args, wrapped in valgrind when asked."""
    return (VALGRIND_ARGS if valgrind else []) + [blockd_prog] + list(args)


def run_blockd(args, timeout=None):
    """Run blockd to completion; return (exit status, filtered output).

    For start-up error cases: a blockd that keeps running is killed after
    timeout seconds (default 10, more under valgrind) and the status is
    the string 'killed after timeout'.
    """
    timeout = timeout or (100 if valgrind else 10)
    try:
        proc = subprocess.run(blockd_argv(args), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b'').decode(errors='replace')
        return 'killed after timeout', filter_text(out)
    return proc.returncode, filter_text(proc.stdout.decode(errors='replace'))


def file_path(name):
    """Path of a scratch file in TEST_DIR."""
    return os.path.join(test_dir, name)


def sock_path(name):
    """Path of a UNIX socket in SOCK_DIR (kept short for sun_path)."""
    return os.path.join(sock_dir, name)


def run_tool(prog, *args, timeout=None):
    """Run a tool (blockd-img, blockd-io, qemu-img...) to completion.

    Returns (exit status, filtered stdout+stderr).  Skips the test if prog
    is missing, so tests of tools not built yet skip rather than fail.
    """
    skip_if_missing(prog)
    proc = subprocess.run([prog] + [str(a) for a in args],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout or TIMEOUT,
                          check=False)
    text = filter_text(proc.stdout.decode(errors='replace'))
    for path, word in ((blockd_img_prog, 'blockd-img'),
                       (blockd_io_prog, 'blockd-io')):
        text = text.replace(path, word)
    return proc.returncode, text


def blockd_img(*args):
    """Run blockd-img; return (exit status, filtered output)."""
    return run_tool(blockd_img_prog, *args)


def blockd_io(*args):
    """Run blockd-io; return (exit status, filtered output)."""
    return run_tool(blockd_io_prog, *args)


def tool_log(prog, *args):
    """Run a tool, print its filtered output, and a nonzero exit status."""
    status, out = run_tool(prog, *args)
    if out:
        log(out.rstrip('\n'))
    if status:
        log(f'exit status {status}')
    return status


# ---- the daemon -----------------------------------------------------------

_live_daemons = []     # launched and not yet reaped
_all_daemons = []      # every Daemon created, for the report at exit


class Daemon:
    """One blockd process with (by default) one QMP monitor.

    Ownership: the Daemon owns the process, its pidfile and log file in
    TEST_DIR and its monitor socket in SOCK_DIR.  Not thread-safe.
    """

    def __init__(self, name='blockd', monitor=True, args=(), pretty=False):
        self.name = name
        self.args = list(args)
        self.pidfile = os.path.join(test_dir, f'{name}.pid')
        self.logfile = os.path.join(test_dir, f'{name}.log')
        self.sock = os.path.join(sock_dir, f'{name}.qmp') if monitor else None
        self.pretty = pretty
        self.proc = None
        self.client = None
        self.exitcode = None
        self.reported = False
        _all_daemons.append(self)

    def add_args(self, *args):
        self.args.extend(args)
        return self

    def monitor_args(self, chardev_id='qmp0', path=None, pretty=False):
        path = path or self.sock
        mon = f'chardev={chardev_id}' + (',pretty=on' if pretty else '')
        return ['--chardev', f'socket,id={chardev_id},path={path},'
                'server=on,wait=off', '--monitor', mon]

    def argv(self):
        args = []
        if self.sock:
            args += self.monitor_args(pretty=self.pretty)
        return blockd_argv(args + self.args + ['--pidfile', self.pidfile])

    def launch(self, negotiate=True, connect=True):
        """Start blockd, wait for its pidfile, connect (and negotiate).

        With connect=False, self.client stays None (the test connects).

        Raises RuntimeError with blockd's output if it exits first.
        """
        for path in (self.pidfile, self.sock):
            if path and os.path.exists(path):
                os.unlink(path)
        with open(self.logfile, 'wb') as logf:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT)
        _live_daemons.append(self)
        self._wait_pidfile()
        if self.sock and connect:
            self.client = self.connect(negotiate=negotiate)
        return self

    def _wait_pidfile(self):
        deadline = time.monotonic() + TIMEOUT
        while self.read_pidfile() is None:
            status = self.proc.poll()
            if status is not None:
                self.exitcode = status
                self.reported = True   # the exception carries the output
                _live_daemons.remove(self)
                raise RuntimeError(f'{self.name} exited with status {status} '
                                   f'before writing its pidfile:\n'
                                   f'{self.output()}')
            if time.monotonic() > deadline:
                raise RuntimeError(f'{self.name}: no pidfile after {TIMEOUT}s')
            time.sleep(0.01)

    def read_pidfile(self):
        """The pid in the pidfile, or None if it is absent or incomplete."""
        try:
            with open(self.pidfile, encoding='ascii') as f:
                text = f.read()
        except FileNotFoundError:
            return None
        # Written in one write(); a trailing newline is optional.
        return int(text) if text.strip().isdigit() else None

    @property
    def pid(self):
        return self.proc.pid

    def connect(self, path=None, negotiate=True):
        """A new client of a monitor of this daemon (default: the main one)."""
        client = QMPClient(timeout=TIMEOUT)
        client.connect(path or self.sock, negotiate=negotiate)
        return client

    def output(self):
        """blockd's stdout+stderr so far, filtered."""
        try:
            with open(self.logfile, encoding='utf-8', errors='replace') as f:
                return filter_text(f.read())
        except FileNotFoundError:
            return ''

    # -- QMP --

    def qmp(self, cmd, args=None, **kwargs):
        """Run a command on the main client; return the raw reply."""
        return self.client.cmd(cmd, args, **kwargs)

    def command(self, cmd, args=None, **kwargs):
        """Run a command; return its value or raise QMPError."""
        return self.client.command(cmd, args, **kwargs)

    def qmp_log(self, cmd, args=None, msg_id=None, **kwargs):
        """Print the request and the reply as sorted, filtered JSON."""
        if kwargs:
            args = dict(args or {}, **kwargs)
        req = QMPClient.make_request(cmd, args, msg_id)
        log(format_request(req))
        resp = self.client.cmd_obj(req)
        log(resp)
        return resp

    def event_wait(self, name, timeout=None, match=None):
        return self.client.event_wait(name, timeout or TIMEOUT, match)

    def get_events(self, wait=False):
        return self.client.get_events(wait)

    # -- process end --

    def wait(self, timeout=None):
        """Wait for blockd to exit (no report); return its exit status."""
        if self.exitcode is None:
            self.exitcode = self.proc.wait(timeout=timeout or TIMEOUT)
            if self in _live_daemons:
                _live_daemons.remove(self)
            if self.client:
                self.client.close()
        return self.exitcode

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def shutdown(self, report=True):
        """Stop blockd (quit, else SIGTERM, else SIGKILL); return its status.

        With report, a nonzero status and anything blockd printed are
        logged, so an unexpected error or valgrind report fails the test.
        """
        if self.exitcode is None:
            self._stop()
        if report:
            self.report()
        return self.exitcode

    def _stop(self):
        """quit over QMP if connected, else SIGTERM; escalate on timeout."""
        quit_sent = False
        if self.client and self.client.sock:
            try:
                self.client.cmd('quit')
                quit_sent = True
            except (OSError, QMPConnectError, QMPTimeoutError,
                    QMPProtocolError):
                pass
        steps = ([None] if quit_sent else []) + [signal.SIGTERM, signal.SIGKILL]
        for sig in steps:
            if sig is not None and self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                self.wait(timeout=None if sig == signal.SIGKILL else TIMEOUT)
                return
            except subprocess.TimeoutExpired:
                log(f'{self.name} did not exit after '
                    f'{sig.name if sig else "quit"}')

    def report(self):
        """Log a nonzero exit status and any output of blockd (once)."""
        if self.reported or self.proc is None:
            return
        self.reported = True
        if self.exitcode == VALGRIND_STATUS and valgrind:
            log(f'{self.name}: valgrind reported errors')
        elif self.exitcode:
            log(f'{self.name} exited with status {self.exitcode}')
        out = self.output()
        if out:
            log(f'{self.name} output:\n{out.rstrip()}')


def _teardown():
    """atexit: shut down daemons left running, report on all of them."""
    for vm in list(_live_daemons):
        vm.shutdown()
    for vm in _all_daemons:
        vm.report()


atexit.register(_teardown)


# ---- command-line one-shot for bash tests ---------------------------------

def oneshot_cli(argv=None):
    """python3 -c 'import iotests; iotests.oneshot_cli()' SOCK CMD [ARGS]

    Connect, negotiate, run CMD with ARGS (a JSON object) and print the
    reply as filtered sorted JSON.  Exit status 0 (even for an error reply;
    the printed reply shows it), 1 if the connection failed.
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3):
        print('usage: oneshot SOCK CMD [JSON-ARGS]', file=sys.stderr)
        sys.exit(2)
    args = json.loads(argv[2]) if len(argv) == 3 else None
    try:
        with QMPClient(timeout=TIMEOUT) as client:
            client.connect(argv[0], negotiate=True)
            log(client.cmd(argv[1], args))
    except (OSError, QMPConnectError, QMPTimeoutError, QMPError) as e:
        print(f'qmp: {filter_text(str(e))}')
        sys.exit(1)
