#!/usr/bin/env python3
"""
Runs scripts/qapi-gen.py on one bad schema case and checks that it exits
with status 1 and prints exactly the expected error (CASE.err).

    test-qapi.py [--update] CASE.json...

--update rewrites the .err files from the current output (review the diff).
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, '..', '..', 'scripts', 'qapi-gen.py')


def run_case(path, update):
    case = os.path.splitext(path)[0]
    with tempfile.TemporaryDirectory() as outdir:
        proc = subprocess.run([sys.executable, GEN, '-o', outdir, path],
                              capture_output=True, text=True, check=False)
    if update:
        with open(case + '.err', 'w', encoding='utf-8') as f:
            f.write(proc.stderr)
        return True
    with open(case + '.err', encoding='utf-8') as f:
        expected = f.read()
    ok = True
    if proc.returncode != 1:
        print('%s: exit status %d, expected 1' % (path, proc.returncode))
        ok = False
    if proc.stderr != expected:
        print('%s: stderr differs\n--- expected\n%s--- got\n%s'
              % (path, expected, proc.stderr))
        ok = False
    return ok


def main():
    args = sys.argv[1:]
    update = '--update' in args
    cases = [a for a in args if a != '--update']
    failed = [c for c in cases if not run_case(c, update)]
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
