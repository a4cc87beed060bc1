#!/usr/bin/env python3
"""Runs every check of `make check` and prints one combined closing line.

Order: the style check, then every test meson knows about (unit tests, which
speak TAP and are counted per test case, and the schema-generator golden
tests, counted per program), then the iotests.  The last line is
"N passed, N failed, N skipped"; the exit status is 1 when anything failed.
"""

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []

    def add(self, other):
        self.passed += other.passed
        self.failed += other.failed
        self.skipped += other.skipped
        self.failures += other.failures


def run_style(build_dir):
    tally = Tally()
    proc = subprocess.run([os.path.join(ROOT, 'scripts', 'check-style.sh'),
                           build_dir], cwd=ROOT, capture_output=True,
                          text=True)
    if proc.returncode == 0:
        tally.passed = 1
        print('style: pass')
    else:
        tally.failed = 1
        tally.failures.append('style')
        print('style: FAIL')
        sys.stdout.write(proc.stdout + proc.stderr)
    return tally


TAP_RESULT = re.compile(r'^(not ok|ok)\b(.*)$')


def parse_tap(name, output, returncode):
    """Counts TAP test points; a crash after the last point is a failure."""
    tally = Tally()
    plan = None
    for line in output.splitlines():
        m = TAP_RESULT.match(line)
        if m:
            ok = m.group(1) == 'ok'
            rest = m.group(2)
            if '# SKIP' in rest or '# skip' in rest:
                tally.skipped += 1
            elif ok or '# TODO' in rest:
                tally.passed += 1
            else:
                tally.failed += 1
                tally.failures.append('%s:%s' % (name, rest.strip()))
            continue
        pm = re.match(r'^1\.\.(\d+)', line)
        if pm:
            plan = int(pm.group(1))
    seen = tally.passed + tally.failed + tally.skipped
    if returncode != 0 and tally.failed == 0:
        tally.failed += 1
        tally.failures.append('%s: exit status %d' % (name, returncode))
    elif plan is not None and seen < plan:
        tally.failed += plan - seen
        tally.failures.append('%s: %d test points missing' % (name, plan - seen))
    return tally


def run_meson_test(test):
    name = test['name']
    env = dict(os.environ)
    env.update(test.get('env') or {})
    start = time.monotonic()
    try:
        proc = subprocess.run(test['cmd'], cwd=test.get('workdir') or ROOT,
                              env=env, capture_output=True, text=True,
                              timeout=test.get('timeout') or 300)
        stdout, out, rc = proc.stdout, proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout or ''
        if isinstance(stdout, bytes):
            stdout = stdout.decode(errors='replace')
        out = stdout + '\nTIMEOUT after %ss\n' % test.get('timeout')
        rc = -1
    elapsed = time.monotonic() - start
    if test.get('protocol') == 'tap':
        tally = parse_tap(name, stdout, rc)
    else:
        tally = Tally()
        if rc == 0:
            tally.passed = 1
        elif rc == 77:
            tally.skipped = 1
        else:
            tally.failed = 1
            tally.failures.append(name)
    return name, tally, out, elapsed


def run_meson_tests(build_dir, jobs):
    intro = subprocess.run(['meson', 'introspect', build_dir, '--tests'],
                           capture_output=True, text=True, check=True)
    tests = json.loads(intro.stdout)
    total = Tally()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, tally, out, elapsed in pool.map(run_meson_test, tests):
            status = 'pass' if tally.failed == 0 else 'FAIL'
            print('%-40s %s (%d passed, %d skipped) [%.1fs]' %
                  (name, status, tally.passed, tally.skipped, elapsed))
            if tally.failed:
                sys.stdout.write(out[-6000:])
            total.add(tally)
    return total


def run_iotests(build_dir, extra):
    tally = Tally()
    check = os.path.join(ROOT, 'tests', 'qemu-iotests', 'check')
    proc = subprocess.Popen([check, '--build-dir', build_dir] + extra,
                            cwd=os.path.dirname(check),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    summary = None
    for line in proc.stdout:
        sys.stdout.write(line)
        m = re.match(r'^iotests: (\d+) passed, (\d+) failed, (\d+) skipped',
                     line)
        if m:
            summary = m
    rc = proc.wait()
    if summary is None:
        tally.failed = 1
        tally.failures.append('iotests: no summary (exit status %d)' % rc)
        return tally
    tally.passed = int(summary.group(1))
    tally.failed = int(summary.group(2))
    tally.skipped = int(summary.group(3))
    if tally.failed:
        tally.failures.append('iotests: %d failed' % tally.failed)
    return tally


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--build-dir', default='build')
    parser.add_argument('-j', '--jobs', type=int, default=os.cpu_count() or 2)
    parser.add_argument('--no-iotests', action='store_true')
    parser.add_argument('iotests_args', nargs='*',
                        help='passed to tests/qemu-iotests/check')
    args = parser.parse_args()
    build_dir = os.path.abspath(args.build_dir)

    total = Tally()
    total.add(run_style(build_dir))
    total.add(run_meson_tests(build_dir, args.jobs))
    if not args.no_iotests:
        total.add(run_iotests(build_dir, args.iotests_args))

    for failure in total.failures:
        print('failed: %s' % failure)
    print('%d passed, %d failed, %d skipped' %
          (total.passed, total.failed, total.skipped))
    return 1 if total.failed else 0


if __name__ == '__main__':
    sys.exit(main())
