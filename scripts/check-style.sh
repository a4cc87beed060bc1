#!/usr/bin/env bash
# Project style and consistency checks run by `make check`
# (shared/CONVENTIONS.md rule 12).  Usage: scripts/check-style.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "${1:-build}" <<'PY'
import os
import re
import subprocess
import sys

build_dir = sys.argv[1]
errors = []

def tracked(patterns):
    out = subprocess.run(['git', 'ls-files', '--cached', '--others',
                          '--exclude-standard', '--'] + patterns,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if os.path.exists(f)]

BANNED = re.compile(r'(?<![A-Za-z0-9_])(strcpy|sprintf|vsprintf|strncpy|'
                    r'strtok|atoi)\s*\(')
STRING_OR_CHAR = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')

def strip_comments_and_strings(text):
    """Blank out /* */ comments and literals, keeping line structure."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
            continue
        c = text[i]
        if c in '"\'':
            m = STRING_OR_CHAR.match(text, i)
            if m:
                out.append(c + ' ' * (len(m.group(0)) - 2) + c)
                i = m.end()
                continue
        out.append(c)
        i += 1
    return ''.join(out)

for path in tracked(['*.c', '*.h']):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    code = strip_comments_and_strings(text)
    for lineno, line in enumerate(code.splitlines(), 1):
        m = BANNED.search(line)
        if m:
            errors.append('%s:%d: banned function %s()' %
                          (path, lineno, m.group(1)))
        if '//' in line:
            errors.append('%s:%d: use /* */ comments, not //' % (path, lineno))
    for lineno, line in enumerate(text.splitlines(), 1):
        if '\t' in line:
            errors.append('%s:%d: tab character (indent with spaces)' %
                          (path, lineno))
        if line != line.rstrip():
            errors.append('%s:%d: trailing whitespace' % (path, lineno))

# Every schema command has a handler and a test.
c_text = ''
for path in tracked(['*.c']):
    with open(path, encoding='utf-8') as f:
        c_text += f.read()
test_text = ''
for path in tracked(['tests/qemu-iotests/*']):
    if os.path.isfile(path):
        with open(path, encoding='utf-8', errors='replace') as f:
            test_text += f.read()
CMD = re.compile(r"\{\s*'command'\s*:\s*'([a-z0-9_-]+)'")
for path in tracked(['qapi/*.json']):
    with open(path, encoding='utf-8') as f:
        schema = f.read()
    for m in CMD.finditer(schema):
        name = m.group(1)
        lineno = schema.count('\n', 0, m.start()) + 1
        cname = name.replace('-', '_')
        expr_end = schema.find('}', m.end())
        gen_false = re.search(r"'gen'\s*:\s*false", schema[m.end():expr_end])
        handler = ('qmp_marshal_' if gen_false else 'qmp_') + cname
        if not re.search(r'^\S.*\b%s\(' % re.escape(handler), c_text, re.M):
            errors.append('%s:%d: command %s has no handler %s()' %
                          (path, lineno, name, handler))
        if not re.search(r'(?<![a-z0-9_-])%s(?![a-z0-9_-])' %
                         re.escape(name), test_text):
            errors.append('%s:%d: command %s is used by no iotest' %
                          (path, lineno, name))

# The committed QMP reference matches what the schema generates.
generated = os.path.join(build_dir, 'qapi', 'qmp-reference.md')
if os.path.exists(generated):
    with open(generated, encoding='utf-8') as f:
        want = f.read()
    try:
        with open('docs/qmp-reference.md', encoding='utf-8') as f:
            have = f.read()
    except FileNotFoundError:
        have = None
    if have != want:
        errors.append('docs/qmp-reference.md is stale: run `make docs`')

for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
