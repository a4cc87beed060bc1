"""
Reader for the QAPI schema dialect (QEMU's qapi/*.json syntax).

Turns schema files into a list of expressions (dicts that remember the line
of every key) and doc blocks, following 'include' directives.  The checking
of what the expressions mean lives in schema.py; this file only knows the
syntax, so every error it raises is a syntax or doc-comment-layout error.
"""

import os
import re
import textwrap


class QAPIError(Exception):
    """A schema error, printed as 'FILE:LINE: message'."""

    def __init__(self, info, msg):
        super().__init__(msg)
        self.info = info
        self.msg = msg

    def __str__(self):
        if self.info is None:
            return self.msg
        return '%s: %s' % (self.info, self.msg)


class SourceInfo:
    """Where something was written: a display file name and a line."""

    def __init__(self, fname, line):
        self.fname = fname
        self.line = line

    def __str__(self):
        return '%s:%d' % (self.fname, self.line)


class Node(dict):
    """A dict read from the schema; .info is where it starts, and
    .key_info[key] where each key was written."""

    def __init__(self, info):
        super().__init__()
        self.info = info
        self.key_info = {}

    def where(self, key):
        return self.key_info.get(key, self.info)


class DocSection:
    """One part of a doc block: the body, '@name:' text or 'Tag:' text."""

    def __init__(self, kind, name, info):
        self.kind = kind          # 'body', 'member', 'feature', 'tag'
        self.name = name          # member/feature name or tag ('Returns')
        self.info = info
        self.lines = []

    def text(self):
        lines = list(self.lines)
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if len(lines) < 2:
            return '\n'.join(lines)
        # Keep relative indentation (examples, lists) but drop the common
        # part.  A first line written after 'Tag:' has none of its own.
        if lines[0].startswith(' '):
            return textwrap.dedent('\n'.join(lines))
        return lines[0] + '\n' + textwrap.dedent('\n'.join(lines[1:]))


class Doc:
    """A '##' ... '##' block.  symbol is set for a definition doc."""

    TAGS = ('Returns', 'Since', 'Notes', 'Note', 'Example', 'Examples',
            'Errors', 'TODO')

    def __init__(self, info):
        self.info = info
        self.symbol = None
        self.body = DocSection('body', None, info)
        self.members = []       # DocSection list, in order written
        self.features = []
        self.sections = []      # tagged sections
        self.tail = DocSection('body', None, info)  # text after members

    def member(self, name):
        for sec in self.members:
            if sec.name == name:
                return sec
        return None


SYMBOL_RE = re.compile(r'@([A-Za-z0-9_.-]+):\s*$')
ARG_RE = re.compile(r'@([A-Za-z0-9_.-]+):(.*)$')
TAG_RE = re.compile(r'([A-Z][A-Za-z]*):(.*)$')


def parse_doc(info, raw_lines):
    """Builds a Doc from the lines between the '##' markers (already
    stripped of '# ').  raw_lines is a list of (SourceInfo, text)."""
    doc = Doc(info)
    if not raw_lines:
        raise QAPIError(info, 'empty doc comment')
    first_info, first = raw_lines[0]
    rest = raw_lines
    mo = SYMBOL_RE.match(first)
    if mo:
        doc.symbol = mo.group(1)
        rest = raw_lines[1:]
    elif first.startswith('@'):
        raise QAPIError(first_info, "doc symbol line must be '@NAME:'")
    cur = doc.body
    phase = 'body'          # body -> members -> features -> tags
    for linfo, line in rest:
        indented = line.startswith(' ')
        stripped = line.strip()
        mo_arg = ARG_RE.match(line)
        mo_tag = TAG_RE.match(line)
        if mo_arg and doc.symbol:
            name = mo_arg.group(1)
            if phase == 'features':
                sec = DocSection('feature', name, linfo)
                doc.features.append(sec)
            else:
                if phase == 'tags':
                    raise QAPIError(linfo, "'@%s:' must come before "
                                    "sections like '%s:'"
                                    % (name, doc.sections[-1].name))
                phase = 'members'
                sec = DocSection('member', name, linfo)
                doc.members.append(sec)
            if mo_arg.group(2).strip():
                sec.lines.append(mo_arg.group(2).strip())
            cur = sec
        elif stripped == 'Features:' and not indented and doc.symbol:
            if doc.features or phase == 'tags':
                raise QAPIError(linfo, "'Features:' must come once, "
                                "before tagged sections")
            phase = 'features'
            cur = None
        elif mo_tag and not indented and mo_tag.group(1) in Doc.TAGS:
            phase = 'tags'
            sec = DocSection('tag', mo_tag.group(1), linfo)
            if mo_tag.group(2).strip():
                sec.lines.append(mo_tag.group(2).strip())
            doc.sections.append(sec)
            cur = sec
        elif cur is not None and cur.kind in ('member', 'feature'):
            if not stripped:
                cur = doc.tail if phase == 'members' else None
            elif indented:
                cur.lines.append(stripped)
            else:
                cur = doc.tail
                cur.lines.append(line)
        elif cur is None:
            if stripped:
                raise QAPIError(linfo, "text after 'Features:' must be "
                                "'@feature:' lines")
        else:
            cur.lines.append(line if cur.kind == 'tag' else line.rstrip())
    return doc


class Lexer:
    """Tokens of one schema file, with '#' comments and '##' doc blocks."""

    def __init__(self, fname, text):
        self.fname = fname
        self.src = text
        self.pos = 0
        self.line = 1
        self.docs = []      # doc blocks met since the last expression

    def info(self):
        return SourceInfo(self.fname, self.line)

    def error(self, msg):
        raise QAPIError(self.info(), msg)

    def _read_line(self):
        end = self.src.find('\n', self.pos)
        if end < 0:
            end = len(self.src)
        text = self.src[self.pos:end]
        self.pos = end
        return text

    def _doc_block(self):
        """Reads a doc block; self.pos is just after the opening '##'."""
        start = self.info()
        junk = self._read_line()
        if junk.strip():
            self.error("junk after '##'")
        lines = []
        while True:
            self.pos += 1
            if self.pos >= len(self.src):
                raise QAPIError(start, 'unterminated doc comment')
            self.line += 1
            linfo = self.info()
            text = self._read_line().rstrip()
            body = text.lstrip()
            if body == '##':
                break
            if not body.startswith('#'):
                raise QAPIError(linfo, "doc comment line must start "
                                "with '#'")
            body = body[1:]
            if body and not body.startswith(' '):
                raise QAPIError(linfo, "'#' in a doc comment must be "
                                "followed by a space")
            lines.append((linfo, body[1:]))
        self.docs.append(parse_doc(start, lines))

    def next(self):
        """Returns (kind, value, info); kind is a punctuation char,
        'str', 'bool' or 'eof'."""
        while True:
            if self.pos >= len(self.src):
                return ('eof', None, self.info())
            ch = self.src[self.pos]
            if ch == '\n':
                self.line += 1
                self.pos += 1
            elif ch in ' \t\r':
                self.pos += 1
            elif ch == '#':
                if self.src.startswith('##', self.pos):
                    line_start = self.src.rfind('\n', 0, self.pos) + 1
                    if self.src[line_start:self.pos].strip():
                        self.error("'##' must start a line")
                    self.pos += 2
                    self._doc_block()
                else:
                    self._read_line()
            else:
                break
        info = self.info()
        ch = self.src[self.pos]
        if ch in '{}[],:':
            self.pos += 1
            return (ch, None, info)
        if ch == "'":
            return ('str', self._string(), info)
        for word, val in (('true', True), ('false', False)):
            if self.src.startswith(word, self.pos):
                self.pos += len(word)
                return ('bool', val, info)
        self.error("stray '%s'" % ch)

    def _string(self):
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.src) or self.src[self.pos] == '\n':
                self.error('missing terminating "\'"')
            ch = self.src[self.pos]
            self.pos += 1
            if ch == "'":
                return ''.join(out)
            if ch == '\\':
                self.error('backslash escapes are not supported')
            if not ' ' <= ch <= '~':
                self.error('non-printable or non-ASCII character in '
                           'string')
            out.append(ch)


class FileParser:
    """Parses one file into expressions paired with their doc blocks."""

    def __init__(self, fname, text):
        self.lex = Lexer(fname, text)
        self.tok = None
        self.advance()

    def advance(self):
        self.tok = self.lex.next()

    def expect(self, kind, what):
        if self.tok[0] != kind:
            shown = self.tok[0] if self.tok[0] != 'str' else 'string'
            if self.tok[0] == 'eof':
                shown = 'end of file'
            raise QAPIError(self.tok[2], 'expected %s, got %s'
                            % (what, shown))
        tok = self.tok
        self.advance()
        return tok

    def value(self):
        kind, val, info = self.tok
        if kind == '{':
            return self.obj()
        if kind == '[':
            self.advance()
            items = []
            if self.tok[0] == ']':
                self.advance()
                return items
            while True:
                items.append(self.value())
                if self.tok[0] == ']':
                    self.advance()
                    return items
                self.expect(',', "',' or ']'")
        if kind in ('str', 'bool'):
            self.advance()
            return val
        raise QAPIError(info, 'expected value, got %s'
                        % ('end of file' if kind == 'eof' else "'%s'"
                           % kind))

    def obj(self):
        node = Node(self.tok[2])
        self.expect('{', "'{'")
        if self.tok[0] == '}':
            self.advance()
            return node
        while True:
            _, key, kinfo = self.expect('str', 'string key')
            if key in node:
                raise QAPIError(kinfo, "duplicate key '%s'" % key)
            self.expect(':', "':'")
            node[key] = self.value()
            node.key_info[key] = kinfo
            if self.tok[0] == '}':
                self.advance()
                return node
            self.expect(',', "',' or '}'")

    def items(self):
        """Yields (expr, docs) where docs are the doc blocks before expr;
        the final (None, docs) carries trailing doc blocks."""
        while self.tok[0] != 'eof':
            if self.tok[0] != '{':
                raise QAPIError(self.tok[2], 'expected top-level '
                                'expression (an object)')
            docs_before = self.lex.docs
            self.lex.docs = []
            # The docs lexed while reading the '{' token belong here; the
            # lookahead after '}' may read the next docs, so split there.
            expr = self.obj()
            pending = self.lex.docs
            self.lex.docs = []
            yield expr, docs_before
            self.lex.docs = pending + self.lex.docs
        yield None, self.lex.docs


def read_schema(main_path):
    """Reads main_path and its includes.  Returns (items, files): items is
    a list of (expr, doc_list, fname) in include-expanded order; files the
    list of paths read (for the depfile)."""
    base_dir = os.path.dirname(os.path.abspath(main_path))
    files = []
    items = []
    seen = set()

    def display(path):
        return os.path.relpath(path, base_dir)

    def read(path, stack, include_info):
        apath = os.path.abspath(path)
        if apath in stack:
            raise QAPIError(include_info, "inclusion loop for %s"
                            % display(apath))
        if apath in seen:
            return
        seen.add(apath)
        try:
            with open(apath, encoding='utf-8') as f:
                text = f.read()
        except OSError as e:
            raise QAPIError(include_info, "can't read %s file '%s': %s"
                            % ('include' if include_info else 'schema',
                               display(apath), e.strerror))
        files.append(apath)
        parser = FileParser(display(apath), text)
        for expr, docs in parser.items():
            if expr is not None and 'include' in expr:
                inc = expr['include']
                if len(expr) != 1:
                    raise QAPIError(expr.info, "'include' must be the "
                                    "only key")
                if not isinstance(inc, str):
                    raise QAPIError(expr.info, "value of 'include' must "
                                    "be a string")
                items.append((None, docs, apath))
                read(os.path.join(os.path.dirname(apath), inc),
                     stack + [apath], expr.where('include'))
                continue
            items.append((expr, docs, apath))

    read(main_path, [], None)
    return items, files
