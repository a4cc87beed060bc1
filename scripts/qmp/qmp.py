"""QMP client library for blockd (and any QEMU-compatible QMP server).

This is the one Python client used by qmp-shell, the iotests helpers and the
latency benchmark, so it has two faces:

* a convenient one: connect(), negotiate(), command() returning the result or
  raising QMPError, events queued while a reply is awaited, event_wait();
* a raw one for tests and benchmarks: send_raw() writes bytes untouched,
  read_message() / read_line() return what the server sent next, so tests
  can feed malformed input and check the exact reply.

Standard library only.  Not thread-safe: one QMPClient per thread.

Framing: the server terminates every message with a newline ("\\r\\n").  With
pretty=on a message spans several lines, so lines are accumulated until they
form one complete JSON value.  Reads are buffered (one recv() usually yields
a whole reply) to keep per-call overhead low for the latency benchmark.
"""

import json
import socket
import time

__all__ = ['QMPClient', 'QMPError', 'QMPTimeoutError',
           'QMPConnectError', 'QMPProtocolError']

DEFAULT_TIMEOUT = 30.0
_RECV_SIZE = 65536


class QMPConnectError(Exception):
    """The connection could not be established or was closed by the peer."""


class QMPTimeoutError(Exception):
    """No (matching) message arrived within the timeout."""


class QMPProtocolError(Exception):
    """The server sent something that is not QMP (e.g. non-JSON)."""


class QMPError(Exception):
    """A command failed: the server replied with {"error": {...}}.

    Attributes: error_class (e.g. "GenericError"), desc (the message),
    response (the whole reply dict).
    """

    def __init__(self, response):
        err = response.get('error', {})
        self.error_class = err.get('class')
        self.desc = err.get('desc')
        self.response = response
        super().__init__(f'{self.error_class}: {self.desc}')


class QMPClient:
    """One QMP connection.

    The socket is blocking with a per-operation timeout (self.timeout, in
    seconds, or None for no limit); every public read also takes a timeout
    argument overriding it.  Events seen while waiting for a reply are
    queued and returned by get_events() / event_wait().
    """

    def __init__(self, timeout=DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.sock = None
        self.greeting = None
        self._buf = bytearray()
        self._events = []
        self._replies = []  # replies read while draining events

    # ---- connection ---------------------------------------------------

    def connect(self, address, negotiate=False, timeout=None,
                read_greeting=True):
        """Connect to a UNIX socket path or a (host, port) TCP address.

        Reads the greeting (stored in self.greeting and returned) unless
        read_greeting is False (then the caller reads it, e.g. with
        read_line() to see the exact bytes).  With negotiate=True (and the
        greeting read) also runs qmp_capabilities.  A refused or missing
        socket is retried until the timeout: a daemon that was just started
        may not be listening yet.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self.sock = self._open_socket(address, timeout)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if deadline is not None and time.monotonic() >= deadline:
                    raise QMPConnectError(f'cannot connect to {address}: {e}')
                time.sleep(0.02)
        if not read_greeting:
            return None
        self.greeting = self.read_message(timeout)
        if 'QMP' not in self.greeting:
            raise QMPProtocolError(f'bad greeting: {self.greeting!r}')
        if negotiate:
            self.negotiate()
        return self.greeting

    @staticmethod
    def _open_socket(address, timeout):
        if isinstance(address, (tuple, list)):
            sock = socket.create_connection(tuple(address), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(address)
            except BaseException:
                sock.close()
                raise
        return sock

    def negotiate(self):
        """Run qmp_capabilities (no capabilities); raise QMPError on failure."""
        return self.command('qmp_capabilities')

    def close(self):
        """Close the connection.  Safe to call twice."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._buf.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- raw layer ----------------------------------------------------

    def send_raw(self, data):
        """Send bytes (or str, encoded UTF-8) exactly as given.

        Raises QMPConnectError if the server has closed the connection,
        QMPTimeoutError if it does not take the data in time.
        """
        if isinstance(data, str):
            data = data.encode()
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise QMPConnectError(f'connection closed by the server ({e})') \
                from None
        except socket.timeout:
            raise QMPTimeoutError('timed out sending to the server') from None

    def _fill(self, deadline):
        """Read more bytes into the buffer; raise on EOF or timeout."""
        if deadline is None:
            self.sock.settimeout(None)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPTimeoutError('timed out waiting for the server')
            self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(_RECV_SIZE)
        except socket.timeout:
            raise QMPTimeoutError('timed out waiting for the server') from None
        except ConnectionResetError:
            chunk = b''
        if not chunk:
            raise QMPConnectError('connection closed by the server')
        self._buf += chunk

    def _deadline(self, timeout):
        timeout = self.timeout if timeout is None else timeout
        return None if timeout is None else time.monotonic() + timeout

    def read_line(self, timeout=None, strip=True):
        """Return the next line the server sent, as bytes.

        With strip (the default) the "\\r\\n" or "\\n" ending is removed.
        """
        buf = self._buf
        end = buf.find(b'\n')
        if end < 0:
            deadline = self._deadline(timeout)
            while end < 0:
                start = len(buf)
                self._fill(deadline)
                end = buf.find(b'\n', start)
        line = bytes(buf[:end + 1])
        del buf[:end + 1]
        if strip:
            line = line[:-2] if line.endswith(b'\r\n') else line[:-1]
        return line

    def _parse_buffered(self):
        """Pop and return one complete message from the buffer, or None.

        A message ends at a newline where the text so far parses as JSON;
        nothing is consumed until a whole message is there, so a timeout
        never loses half a pretty-printed message.
        """
        buf = self._buf
        end = buf.find(b'\n')
        while end >= 0:
            try:
                msg = json.loads(buf[:end])
            except ValueError:
                if not buf[:end].lstrip().startswith((b'{', b'[')):
                    text = bytes(buf[:end])
                    del buf[:end + 1]
                    raise QMPProtocolError(f'not JSON: {text!r}') from None
                end = buf.find(b'\n', end + 1)
                continue
            del buf[:end + 1]
            return msg
        return None

    def read_message(self, timeout=None):
        """Return the next message (reply or event) as a dict, in wire order.

        Reads the wire (or the receive buffer): queued events and replies
        are not looked at.
        """
        msg = self._parse_buffered()
        if msg is None:
            deadline = self._deadline(timeout)
            while msg is None:
                self._fill(deadline)
                msg = self._parse_buffered()
        return msg

    def read_reply(self, timeout=None):
        """Return the next non-event message, queueing events read on the way."""
        if self._replies:
            return self._replies.pop(0)
        deadline = self._deadline(timeout)
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            msg = self.read_message(left)
            if 'event' in msg:
                self._events.append(msg)
            else:
                return msg

    # ---- commands -----------------------------------------------------

    @staticmethod
    def make_request(name, args=None, msg_id=None):
        """Return the request dict for command name.  args may be None."""
        req = {'execute': name}
        if args:
            req['arguments'] = args
        if msg_id is not None:
            req['id'] = msg_id
        return req

    def cmd_obj(self, request, timeout=None):
        """Send a request dict and return the raw reply dict."""
        self.send_raw(json.dumps(request).encode())
        return self.read_reply(timeout)

    def cmd(self, name, args=None, msg_id=None, timeout=None, **kwargs):
        """Run a command and return the raw reply (with 'return' or 'error').

        Arguments come from the args dict and/or keyword arguments; keys
        containing '-' are passed as args={'x-perf': ...} or
        **{'x-perf': ...}.  Names are never rewritten.  A command argument
        called args, msg_id or timeout must go in the args dict.
        """
        if kwargs:
            args = dict(args or {}, **kwargs)
        return self.cmd_obj(self.make_request(name, args, msg_id), timeout)

    def command(self, name, args=None, timeout=None, **kwargs):
        """Run a command; return its 'return' value or raise QMPError."""
        resp = self.cmd(name, args, timeout=timeout, **kwargs)
        if 'error' in resp:
            raise QMPError(resp)
        if 'return' not in resp:
            raise QMPProtocolError(f'reply has no return: {resp!r}')
        return resp['return']

    # ---- events -------------------------------------------------------

    def get_events(self, wait=False, clear=True, drain=True):
        """Return queued events (and, with drain, any already received).

        wait: False to only drain what has arrived, True to block for at
        least one event up to self.timeout, or a number of seconds.
        drain=False returns only events queued while waiting for replies,
        i.e. those that came before the last reply.
        """
        if drain:
            self._drain_nonblocking()
        if wait and not self._events:
            timeout = self.timeout if wait is True else wait
            self._events.append(self._next_event(timeout))
        events = list(self._events)
        if clear:
            self._events.clear()
        return events

    def clear_events(self):
        """Drop all queued events."""
        self._events.clear()

    def event_wait(self, name, timeout=None, match=None):
        """Wait for event name whose fields contain match; return it.

        match is a dict compared recursively as a subset of the event
        (e.g. {'data': {'reason': 'host-qmp-quit'}}).  Non-matching events
        stay queued.  Raises QMPTimeoutError.
        """
        for i, ev in enumerate(self._events):
            if ev.get('event') == name and _matches(ev, match):
                return self._events.pop(i)
        deadline = self._deadline(timeout)
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            ev = self._next_event(left)
            if ev.get('event') == name and _matches(ev, match):
                return ev
            self._events.append(ev)

    def _next_event(self, timeout):
        msg = self.read_message(timeout)
        if 'event' not in msg:
            raise QMPProtocolError(f'unexpected reply while waiting for an '
                                   f'event: {msg!r}')
        return msg

    def _drain_nonblocking(self):
        """Queue every complete event already received, without blocking."""
        if self.sock is None:
            return
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(_RECV_SIZE)
                if not chunk:
                    break
                self._buf += chunk
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.sock.settimeout(self.timeout)
        msg = self._parse_buffered()
        while msg is not None:
            if 'event' in msg:
                self._events.append(msg)
            else:
                self._replies.append(msg)
            msg = self._parse_buffered()


def _matches(obj, pattern):
    """True if every key of pattern is in obj with a matching value."""
    if pattern is None:
        return True
    if isinstance(pattern, dict):
        if not isinstance(obj, dict):
            return False
        return all(k in obj and _matches(obj[k], v) for k, v in pattern.items())
    return obj == pattern
