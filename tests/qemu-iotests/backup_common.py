"""Helpers shared by the backup iotests (110-129).

Images with deterministic content, a daemon with a source device and a
target node, waiting for a job's end while collecting its events, and the
checks every test ends with: the target equals the saved pre-backup
content, the source's graph is as before.
"""

import os
import random

import iotests
from iotests import log

MiB = 1024 * 1024


def make_image(path, size, seed=1, holes=(), zeroes=()):
    """A raw file of size bytes: random data from seed per 64 KiB block,
    with (offset, length) holes left sparse and zeroes written as
    zeroes.  Returns the content as bytes."""
    rnd = random.Random(seed)
    data = bytearray(rnd.randbytes(size))
    for off, length in list(holes) + list(zeroes):
        data[off:off + length] = bytes(length)
    with open(path, 'wb') as f:
        f.truncate(size)
        pos = 0
        for off, length in sorted(holes):
            f.seek(pos)
            f.write(data[pos:off])
            pos = off + length
        f.seek(pos)
        f.write(data[pos:])
    return bytes(data)


def make_empty(path, size):
    with open(path, 'wb') as f:
        f.truncate(size)


def read_file(path):
    with open(path, 'rb') as f:
        return f.read()


def compare(path, expected, what='target',
            content='the pre-backup content'):
    """Logs whether the file equals expected, and where it first
    differs if not."""
    got = read_file(path)
    if got == expected:
        log(f'{what} equals {content}')
        return True
    if len(got) != len(expected):
        log(f'{what} size {len(got)} != {len(expected)}')
        return False
    first = next(i for i in range(len(got)) if got[i] != expected[i])
    log(f'{what} DIFFERS from {content} at byte {first}')
    return False


def node_names(vm):
    """Sorted node-names and each node's file child, the shape of the
    graph as query-named-block-nodes shows it."""
    nodes = vm.command('query-named-block-nodes')
    return sorted((n['node-name'], n.get('file', '')) for n in nodes
                  if not n['node-name'].startswith('#'))


def add_raw(vm, name, path, direct=False):
    """A raw node name over a file node name-file."""
    vm.command('blockdev-add', driver='raw', **{'node-name': name},
               file={'driver': 'file', 'filename': path,
                     'node-name': name + '-file',
                     'cache': {'direct': direct}})


def wait_job_end(vm, job_id, show_status=True, dismissed=True,
                 hide_offset=False):
    """Waits for the job's BLOCK_JOB_COMPLETED or BLOCK_JOB_CANCELLED and
    logs the events seen meanwhile (status changes compactly), then, if
    the job dismisses itself, for its last status change ('null').
    Returns the final event."""
    end = _wait_end(vm, job_id, show_status, hide_offset)
    if dismissed:
        while True:
            e = vm.event_wait('JOB_STATUS_CHANGE')
            if show_status:
                log(f"status: {e['data']['status']}")
            if e['data']['status'] == 'null':
                break
    return end


def next_event(vm):
    """The next event, one at a time (others stay queued)."""
    evs = vm.get_events(wait=True)
    vm.client._events[0:0] = evs[1:]
    return evs[0]


def _wait_end(vm, job_id, show_status, hide_offset):
    while True:
        e = next_event(vm)
        name = e['event']
        data = e.get('data', {})
        if name == 'JOB_STATUS_CHANGE':
            if show_status:
                log(f"status: {data['status']}")
            continue
        if hide_offset and 'offset' in data:
            e = dict(e, data=dict(data, offset='OFFSET'))
        log(e)
        if name in ('BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED') and \
                data.get('device') == job_id:
            return e


def io(vm, device, cmd):
    """x-blockdev-io on device; logs nothing, returns the output."""
    return vm.command('x-blockdev-io', device=device, command=cmd)['output']

