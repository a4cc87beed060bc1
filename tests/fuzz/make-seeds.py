#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz) into OUTDIR.

Seeds are generated rather than committed so that they stay readable:
each one is a well-formed conversation the fuzzer then mutates.
  OUTDIR/fuzz-qmp-input/   QMP messages and keyval option strings
  OUTDIR/fuzz-nbd-server/  NBD client byte streams (handshake + requests)
"""

import os
import struct
import sys

QMP_SEEDS = [
    b'{"execute": "blockdev-add", "arguments": {"driver": "file",'
    b' "node-name": "f0", "filename": "a.raw", "cache": {"direct": true},'
    b' "aio": "native", "locking": "auto", "detect-zeroes": "unmap"}}',
    b'{"execute": "blockdev-add", "arguments": {"driver": "raw",'
    b' "node-name": "r0", "file": "f0", "offset": 512, "size": 4096}}',
    b'{"execute": "blockdev-add", "arguments": {"driver": "raw",'
    b' "node-name": "r1", "file": {"driver": "null-co", "size": 1024}}}',
    b'{"execute": "blockdev-add", "arguments": {"driver": "nbd",'
    b' "node-name": "n0", "server": {"type": "inet", "host": "::1",'
    b' "port": "10809"}, "export": "e0", "reconnect-delay": 3}}',
    b'{"execute": "block-export-add", "arguments": {"type": "nbd",'
    b' "id": "e0", "node-name": "r0", "writable": true,'
    b' "iothread": "io0", "fixed-iothread": false}}',
    b'{"execute": "blockdev-backup", "arguments": {"job-id": "j0",'
    b' "device": "r0", "target": "t0", "sync": "full", "speed": 1048576,'
    b' "on-target-error": "stop", "x-perf": {"max-workers": 4,'
    b' "max-chunk": 4194304, "use-copy-range": false}}}',
    b'{"execute": "drive-backup", "arguments": {"device": "r0",'
    b' "target": "/tmp/x.raw", "format": "raw", "mode": "existing",'
    b' "sync": "top"}}',
    b'{"execute": "transaction", "arguments": {"type": "blockdev-backup",'
    b' "data": {"device": "r0", "target": "t0", "sync": "none"}}}',
    b'{"execute": "transaction", "arguments": {"type": "abort",'
    b' "data": {}}} {"execute": "x"} [1, 2, {"a": null}] "str" 1.5e3',
]
KEYVAL_SEEDS = [
    b'driver=file,node-name=f0,filename=a.raw,cache.direct=on,aio=native',
    b'driver=raw,node-name=r0,file=f0,offset=512,size=4096',
    b'driver=raw,file.driver=null-co,file.size=1M,file.read-zeroes=on',
    b'type=nbd,id=e0,node-name=r0,writable=on,iothread=io0',
    b'driver=nbd,server.type=unix,server.path=/tmp/s,export=e0',
    b'job-id=j0,device=r0,target=t0,sync=full,x-perf.max-workers=8',
]

NBD_OPTS_MAGIC = 0x49484156454F5054
NBD_REQUEST_MAGIC = 0x25609513


def opt(code, payload=b''):
    return struct.pack('>QII', NBD_OPTS_MAGIC, code, len(payload)) + payload


def go(name, infos=(1, 3)):
    n = name.encode()
    return opt(7, struct.pack('>I', len(n)) + n +
               struct.pack('>H', len(infos)) +
               b''.join(struct.pack('>H', i) for i in infos))


def meta(code, name, queries):
    n = name.encode()
    body = struct.pack('>I', len(n)) + n + struct.pack('>I', len(queries))
    for q in queries:
        body += struct.pack('>I', len(q)) + q.encode()
    return opt(code, body)


def req(cmd, offset, length, flags=0, cookie=1, payload=b''):
    return struct.pack('>IHHQQI', NBD_REQUEST_MAGIC, flags, cmd, cookie,
                       offset, length) + payload


CLIENT_FLAGS = struct.pack('>I', 3)   # fixed newstyle, no zeroes
SESSION = (req(1, 0, 4096, cookie=1, payload=b'\xab' * 4096) +
           req(0, 0, 4096, cookie=2) +
           req(0, 65536, 131072, flags=4, cookie=3) +
           req(6, 8192, 65536, flags=2, cookie=4) +
           req(4, 0, 4096, cookie=5) +
           req(7, 0, 1048576, flags=8, cookie=6) +
           req(3, 0, 0, cookie=7) +
           req(2, 0, 0, cookie=8))

NBD_SEEDS = {
    'go-session': CLIENT_FLAGS + opt(8) +
    meta(10, 'e0', ['base:allocation']) + go('e0') + SESSION,
    'export-name': CLIENT_FLAGS + opt(1, b'e0') + SESSION,
    'list-info-abort': CLIENT_FLAGS + opt(3) + opt(6, b'\0\0\0\2ro\0\0') +
    meta(9, 'e0', []) + opt(2),
    'readonly-write': CLIENT_FLAGS + go('ro') +
    req(1, 0, 512, cookie=9, payload=b'\0' * 512) + req(2, 0, 0),
    'bad-option': CLIENT_FLAGS + opt(99, b'xyz') + opt(5) + go('nope'),
}


def write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


def main():
    out = sys.argv[1]
    qdir = os.path.join(out, 'fuzz-qmp-input')
    ndir = os.path.join(out, 'fuzz-nbd-server')
    os.makedirs(qdir, exist_ok=True)
    os.makedirs(ndir, exist_ok=True)
    for i, s in enumerate(QMP_SEEDS):
        write(os.path.join(qdir, 'qmp-%02d' % i), b'\0' + s)
    for i, s in enumerate(KEYVAL_SEEDS):
        write(os.path.join(qdir, 'keyval-%02d' % i), b'\1' + s)
    for name, s in NBD_SEEDS.items():
        write(os.path.join(ndir, name), s)


if __name__ == '__main__':
    main()
