#!/usr/bin/env python3
"""blockd's demo: a live point-in-time backup of a disk a guest is writing.

What it does (make demo runs it after building):
  1. creates a 1 GiB raw disk with deterministic content (a seeded
     pattern, every MiB distinct, with holes) in a scratch directory;
  2. starts blockd with the disk as node 'disk0', exported over NBD;
  3. runs a guest-like writer against the export (4 KiB random writes,
     16 in flight, through a small NBD client in this file);
  4. quiesces the writer for a moment, keeps a sparse copy of the disk
     (the content at the backup's instant), starts drive-backup to a
     local file and lets the writer go on while printing the job's
     progress;
  5. checks that the backup equals the copy, byte for byte, and prints
     the job's throughput, the writer's IOPS before and during the
     backup, and query-blockstats of the disk.
Exit status 0 when the backup is right.
"""

import argparse
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                'qmp'))
from qmp import QMPClient  # noqa: E402

MiB = 1024 * 1024


# ---- The disk ----

def make_disk(path, size, seed):
    """Writes the default disk: a seeded 1 MiB pattern, each MiB made
    distinct by its index stamped every 4 KiB; every 8th 16 MiB region is
    left as a hole and every 13th MiB is zeroes."""
    base = bytearray(random.Random(seed).randbytes(MiB))
    with open(path, 'wb') as f:
        f.truncate(size)
        for mib in range(size // MiB):
            if (mib // 16) % 8 == 7:
                continue
            f.seek(mib * MiB)
            if mib % 13 == 12:
                f.write(bytes(MiB))
                continue
            for off in range(0, MiB, 4096):
                struct.pack_into('<QQ', base, off, seed, mib)
            f.write(base)
        # On disk before the daemon starts: writeback of a fresh GiB
        # would otherwise compete with the guest writer's first seconds
        # and make its "before" IOPS look low.
        f.flush()
        os.fsync(f.fileno())


def files_equal(a, b):
    """Compares two files in 4 MiB pieces; returns (equal, first diff)."""
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        pos = 0
        while True:
            x, y = fa.read(4 * MiB), fb.read(4 * MiB)
            if x != y:
                for i in range(min(len(x), len(y))):
                    if x[i] != y[i]:
                        return False, pos + i
                return False, pos + min(len(x), len(y))
            if not x:
                return True, None
            pos += len(x)


# ---- A small NBD client: fixed newstyle handshake, NBD_OPT_GO, writes ----

NBD_OPT_GO = 7
NBD_REP_ACK = 1
NBD_REP_INFO = 3
NBD_CMD_WRITE = 1
NBD_CMD_FLUSH = 3
NBD_CMD_DISC = 2
OPT_MAGIC = 0x3e889045565a9
REQ_MAGIC = 0x25609513
REPLY_MAGIC = 0x67446698


class NBDClient:
    def __init__(self, sock_path, export):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock_path)
        hello = self._recv(18)
        if hello[:16] != b'NBDMAGICIHAVEOPT':
            raise RuntimeError('not an NBD newstyle server')
        self.sock.sendall(struct.pack('>I', 1 | 2))   # fixed, no zeroes
        name = export.encode()
        data = struct.pack('>I', len(name)) + name + struct.pack('>H', 0)
        self.sock.sendall(b'IHAVEOPT' +
                          struct.pack('>II', NBD_OPT_GO, len(data)) + data)
        self.size = None
        while True:
            magic, _opt, rtype, length = struct.unpack('>QIII',
                                                       self._recv(20))
            payload = self._recv(length)
            if magic != OPT_MAGIC or rtype & 0x80000000:
                raise RuntimeError(f'NBD_OPT_GO failed (reply {rtype:#x})')
            if rtype == NBD_REP_INFO and \
                    struct.unpack('>H', payload[:2])[0] == 0:
                self.size = struct.unpack('>Q', payload[2:10])[0]
            if rtype == NBD_REP_ACK:
                break
        self.handle = 0

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError('NBD server closed the connection')
            buf += chunk
        return bytes(buf)

    def send(self, cmd, offset, length, data=b''):
        self.handle += 1
        self.sock.sendall(struct.pack('>IHHQQI', REQ_MAGIC, 0, cmd,
                                      self.handle, offset, length) + data)

    def reply(self):
        magic, err, _handle = struct.unpack('>IIQ', self._recv(16))
        if magic != REPLY_MAGIC or err:
            raise RuntimeError(f'NBD request failed: error {err}')

    def close(self):
        self.send(NBD_CMD_DISC, 0, 0)
        self.sock.close()


class GuestWriter(threading.Thread):
    """4 KiB random writes at queue depth 16 through NBD.  pause() waits
    until nothing is in flight; counts completed writes per phase."""

    def __init__(self, sock_path, export, depth=16, seed=7):
        super().__init__(daemon=True)
        self.client = NBDClient(sock_path, export)
        self.depth = depth
        self.rnd = random.Random(seed)
        self.blocks = self.client.size // 4096
        self.running = threading.Event()
        self.idle = threading.Event()
        self.stop = False
        self.done = 0
        self.error = None

    def run(self):
        inflight = 0
        try:
            while not self.stop:
                if not self.running.is_set():
                    while inflight:
                        self.client.reply()
                        inflight -= 1
                        self.done += 1
                    self.idle.set()
                    self.running.wait(0.1)
                    continue
                self.idle.clear()
                block = self.rnd.randrange(self.blocks)
                self.client.send(NBD_CMD_WRITE, block * 4096, 4096,
                                 self.rnd.randbytes(16) * 256)
                inflight += 1
                if inflight >= self.depth:
                    self.client.reply()
                    inflight -= 1
                    self.done += 1
            while inflight:
                self.client.reply()
                inflight -= 1
                self.done += 1
            self.client.close()
        except Exception as e:   # reported by the main thread
            self.error = e
        self.idle.set()

    def resume(self):
        self.running.set()

    def pause(self):
        self.running.clear()
        self.idle.wait(30)


# ---- The daemon ----

def start_blockd(build, work, disk, direct):
    qmp_sock = os.path.join(work, 'qmp.sock')
    nbd_sock = os.path.join(work, 'nbd.sock')
    pidfile = os.path.join(work, 'blockd.pid')
    cache = 'cache.direct=on,aio=native,' if direct else ''
    argv = [os.path.join(build, 'storage-daemon', 'blockd'),
            '--chardev', f'socket,id=c0,path={qmp_sock},server=on,wait=off',
            '--monitor', 'c0',
            '--blockdev',
            f'driver=file,node-name=disk0-file,{cache}filename={disk}',
            '--blockdev', 'driver=raw,node-name=disk0,file=disk0-file',
            '--nbd-server', f'addr.type=unix,addr.path={nbd_sock}',
            '--export', 'nbd,id=e0,node-name=disk0,name=disk0,writable=on',
            '--pidfile', pidfile]
    log = open(os.path.join(work, 'blockd.log'), 'w')
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        if os.path.exists(pidfile) or proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        raise RuntimeError('blockd did not start: ' +
                           open(os.path.join(work, 'blockd.log')).read())
    qmp = QMPClient(timeout=60)
    qmp.connect(qmp_sock, negotiate=True)
    return proc, qmp, nbd_sock


def direct_works(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        os.close(fd)
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--build-dir', default='build')
    ap.add_argument('--size', type=int, default=1024, help='disk MiB')
    ap.add_argument('--dir', default='/var/tmp',
                    help='where the scratch directory goes')
    ap.add_argument('--keep', action='store_true',
                    help='keep the scratch directory')
    args = ap.parse_args()
    t_start = time.monotonic()
    work = tempfile.mkdtemp(prefix='blockd-demo-', dir=args.dir)
    disk = os.path.join(work, 'disk.raw')
    snap = os.path.join(work, 'snapshot.raw')
    backup = os.path.join(work, 'backup.raw')
    proc = None
    try:
        print(f'== creating a {args.size} MiB disk with content in {work}')
        make_disk(disk, args.size * MiB, seed=2013)
        direct = direct_works(disk)
        proc, qmp, nbd_sock = start_blockd(args.build_dir, work, disk,
                                           direct)
        print(f'== blockd {proc.pid} exports disk0 over NBD at {nbd_sock}'
              f' (O_DIRECT {"on" if direct else "off"})')

        writer = GuestWriter(nbd_sock, 'disk0')
        writer.start()
        writer.resume()
        time.sleep(0.5)             # warm-up: connection, first extents
        warm = writer.done
        t_idle = time.monotonic()
        time.sleep(3)
        writer.pause()
        idle_iops = (writer.done - warm) / (time.monotonic() - t_idle)
        print(f'== guest writer: {idle_iops:.0f} IOPS (4k random writes, '
              f'16 in flight) before the backup')

        # The instant: the writer is quiesced (nothing in flight), so the
        # copy is the disk's content when the backup starts.
        subprocess.run(['cp', '--sparse=always', disk, snap], check=True)
        before = writer.done
        t0 = time.monotonic()
        qmp.command('drive-backup', device='disk0', sync='full',
                    target=backup, **{'job-id': 'demo'})
        writer.resume()
        print('== drive-backup started; the guest keeps writing')
        end = None
        while end is None:
            time.sleep(0.5)
            for ev in qmp.get_events():
                if ev['event'] in ('BLOCK_JOB_COMPLETED',
                                   'BLOCK_JOB_CANCELLED') and \
                        ev['data']['device'] == 'demo':
                    end = ev
            jobs = [j for j in qmp.command('query-block-jobs')
                    if j['device'] == 'demo']
            if jobs and end is None:
                j = jobs[0]
                el = time.monotonic() - t0
                pct = 100.0 * j['offset'] / max(j['len'], 1)
                print(f'   {el:5.1f}s  {j["offset"] / MiB:7.1f} / '
                      f'{j["len"] / MiB:.0f} MiB  {pct:5.1f}%  '
                      f'{j["status"]}')
        elapsed = time.monotonic() - t0
        writer.pause()
        during = writer.done - before
        writer.stop = True
        writer.resume()
        writer.join(10)
        if writer.error:
            raise RuntimeError(f'guest writer failed: {writer.error}')
        if 'error' in end['data']:
            raise RuntimeError(f"backup failed: {end['data']['error']}")
        length = end['data']['len']
        print(f'== backup done: {length / MiB:.0f} MiB in {elapsed:.2f} s '
              f'= {length / MiB / elapsed:.0f} MiB/s; guest '
              f'{during / elapsed:.0f} IOPS during it '
              f'({100.0 * during / elapsed / max(idle_iops, 1):.0f}% of '
              f'before), {during} writes')

        ok, where = files_equal(snap, backup)
        print(f'== backup equals the disk at the backup\'s start: '
              f'{"yes" if ok else f"NO (first difference at {where})"}')
        changed = not files_equal(snap, disk)[0]
        print(f'== the disk itself moved on meanwhile: '
              f'{"yes" if changed else "no"}')
        du_disk = os.stat(disk).st_blocks * 512 / MiB
        du_backup = os.stat(backup).st_blocks * 512 / MiB
        print(f'== allocated: disk {du_disk:.0f} MiB, backup '
              f'{du_backup:.0f} MiB (holes and zeroes stay sparse)')

        print('== query-blockstats of disk0:')
        for s in qmp.command('query-blockstats', **{'query-nodes': True}):
            if s.get('node-name') != 'disk0':
                continue
            st = s['stats']
            print(f"   rd {st['rd_operations']} ops "
                  f"{st['rd_bytes'] / MiB:.0f} MiB, wr "
                  f"{st['wr_operations']} ops {st['wr_bytes'] / MiB:.0f} "
                  f"MiB, flush {st['flush_operations']} ops, "
                  f"wr_highest_offset {st['wr_highest_offset']}")
        qmp.command('quit')
        proc.wait(30)
        proc = None
        print(f'== total {time.monotonic() - t_start:.1f} s')
        return 0 if ok and changed else 1
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
