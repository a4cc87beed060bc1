#!/usr/bin/env python3
"""
qapi-gen: generates C code and the QMP reference from the QAPI schema.

    qapi-gen.py -o OUTDIR [-p PREFIX] [--depfile FILE] SCHEMA

writes PREFIXqapi-{types,visit,commands,events}.{h,c}, PREFIXqapi-
introspect.c and PREFIXqmp-reference.md into OUTDIR.  A bad schema is
reported as 'FILE:LINE: message' on stderr with exit status 1.  Files are
only rewritten when their content changes, so builds stay incremental.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qapi.cgen import (gen_commands, gen_events, gen_types,  # noqa: E402
                       gen_visit)
from qapi.docgen import gen_doc  # noqa: E402
from qapi.introspect import gen_introspect  # noqa: E402
from qapi.parser import QAPIError  # noqa: E402
from qapi.schema import Schema  # noqa: E402


def write_file(path, text):
    """Replaces path atomically (readers never see a half-written file)."""
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description='QAPI code generator')
    ap.add_argument('-o', '--output-dir', default='.')
    ap.add_argument('-p', '--prefix', default='')
    ap.add_argument('--depfile')
    ap.add_argument('schema')
    args = ap.parse_args()
    try:
        schema = Schema(args.schema)
    except QAPIError as err:
        print(err, file=sys.stderr)
        return 1
    p = args.prefix
    outputs = {}
    outputs['qapi-types.h'], outputs['qapi-types.c'] = gen_types(schema, p)
    outputs['qapi-visit.h'], outputs['qapi-visit.c'] = gen_visit(schema, p)
    outputs['qapi-commands.h'], outputs['qapi-commands.c'] = \
        gen_commands(schema, p)
    outputs['qapi-events.h'], outputs['qapi-events.c'] = gen_events(schema, p)
    outputs['qapi-introspect.c'] = gen_introspect(schema, p)
    outputs['qmp-reference.md'] = gen_doc(schema)
    os.makedirs(args.output_dir, exist_ok=True)
    for name, text in outputs.items():
        write_file(os.path.join(args.output_dir, p + name), text)
    if args.depfile:
        target = os.path.join(args.output_dir, p + 'qapi-types.h')
        deps = ' '.join(f.replace(' ', '\\ ') for f in schema.files)
        write_file(args.depfile, '%s: %s\n' % (target, deps))
    return 0


if __name__ == '__main__':
    sys.exit(main())
