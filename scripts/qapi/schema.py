"""
The QAPI schema model: checks the expressions read by parser.py and turns
them into typed entities (enums, structs, unions, alternates, lists,
commands, events) that the generators walk.

Every rule a schema author can break is checked here and reported as
'FILE:LINE: message', so the generators can assume a valid schema.
"""

import re

from .parser import QAPIError, read_schema

C_KEYWORDS = set('''
    auto break case char const continue default do double else enum extern
    float for goto if inline int long register restrict return short signed
    sizeof static struct switch typedef union unsigned void volatile while
    _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn
    _Static_assert _Thread_local bool true false linux unix errno
'''.split())

TYPE_NAME_RE = re.compile(r'[A-Z][A-Za-z0-9]*$')
LOWER_NAME_RE = re.compile(r'[a-z][a-z0-9-]*$')
ENUM_VALUE_RE = re.compile(r'[a-z0-9][a-z0-9-]*$')
EVENT_NAME_RE = re.compile(r'[A-Z][A-Z0-9_]*$')


def c_name(name):
    """C identifier for a schema name: '-' and '.' become '_', and names
    that C (or gcc's gnu11 predefined macros) reserve get a 'q_' prefix."""
    out = name.replace('-', '_').replace('.', '_')
    if out in C_KEYWORDS:
        out = 'q_' + out
    return out


def camel_to_upper(name):
    """'BlockdevDriver' -> 'BLOCKDEV_DRIVER', 'QMPCapability' ->
    'QMP_CAPABILITY': a word break goes before a capital that starts a
    lower-case run or follows a digit."""
    s = c_name(name)
    if s.isupper():
        return s
    out = []
    for i, ch in enumerate(s):
        if ch.isupper() and i > 0 and s[i - 1] != '_':
            nxt_lower = i + 1 < len(s) and s[i + 1].islower()
            if nxt_lower or s[i - 1].isdigit():
                out.append('_')
        out.append(ch)
    return ''.join(out).lstrip('_').upper()


# ---------------------------------------------------------------------------
# Entities

class Entity:
    meta = None

    def __init__(self, name, info, doc=None, features=()):
        self.name = name
        self.info = info
        self.doc = doc
        self.features = list(features)

    def c_name(self):
        return c_name(self.name)


class Type(Entity):
    def is_pointer(self):
        """Stored as a pointer in C (NULL when an optional one is absent)."""
        return True

    def json_kind(self):
        """For alternates: which JSON kind selects this branch."""
        raise NotImplementedError


class BuiltinType(Type):
    meta = 'builtin'
    # name: (C type, JSON type in introspection, kind for alternates)
    TABLE = {
        'str': ('char *', 'string', 'string'),
        'int': ('int64_t', 'int', 'int'),
        'int8': ('int8_t', 'int', 'int'),
        'int16': ('int16_t', 'int', 'int'),
        'int32': ('int32_t', 'int', 'int'),
        'int64': ('int64_t', 'int', 'int'),
        'uint8': ('uint8_t', 'int', 'int'),
        'uint16': ('uint16_t', 'int', 'int'),
        'uint32': ('uint32_t', 'int', 'int'),
        'uint64': ('uint64_t', 'int', 'int'),
        'size': ('uint64_t', 'int', 'int'),
        'number': ('double', 'number', 'number'),
        'bool': ('bool', 'boolean', 'bool'),
        'null': ('QapiNull', 'null', 'null'),
        'any': ('json_t *', 'value', None),
    }
    RANGES = {
        'int': ('INT64_MIN', 'INT64_MAX'), 'int64': ('INT64_MIN', 'INT64_MAX'),
        'int8': ('INT8_MIN', 'INT8_MAX'), 'int16': ('INT16_MIN', 'INT16_MAX'),
        'int32': ('INT32_MIN', 'INT32_MAX'),
        'uint8': (None, 'UINT8_MAX'), 'uint16': (None, 'UINT16_MAX'),
        'uint32': (None, 'UINT32_MAX'), 'uint64': (None, 'UINT64_MAX'),
        'size': (None, 'UINT64_MAX'),
    }

    def __init__(self, name):
        super().__init__(name, None)
        self.c_type_name, self.json_type, self.kind = self.TABLE[name]

    def c_name(self):
        return self.name

    def is_pointer(self):
        return self.name in ('str', 'any')

    def json_kind(self):
        return self.kind


class EnumType(Type):
    meta = 'enum'

    def __init__(self, name, info, doc, features, values, prefix):
        super().__init__(name, info, doc, features)
        self.values = values        # list of Member-like (name, features)
        self.prefix = prefix

    def is_pointer(self):
        return False

    def json_kind(self):
        return 'string'

    def const(self, value):
        prefix = self.prefix if self.prefix else camel_to_upper(self.name)
        # The prefix already keeps the constant clear of C keywords.
        return '%s_%s' % (prefix, value.replace('-', '_').replace('.', '_')
                          .upper())

    def max_const(self):
        prefix = self.prefix if self.prefix else camel_to_upper(self.name)
        return prefix + '__MAX'


class ListType(Type):
    meta = 'array'

    def __init__(self, element):
        super().__init__(element.name + 'List', None)
        self.element = element

    def c_name(self):
        return self.element.c_name() + 'List'

    def intro_name(self):
        return '[%s]' % self.element.name

    def json_kind(self):
        return 'array'


class Member:
    def __init__(self, name, type_name, optional, info, features=()):
        self.name = name
        self.type_name = type_name
        self.type = None
        self.optional = optional
        self.info = info
        self.features = list(features)

    def c_name(self):
        return c_name(self.name)


class ObjectType(Type):
    """A struct, or a flat union (variants set), or an implicit struct."""
    meta = 'object'

    def __init__(self, name, info, doc, features, base_name, members,
                 implicit=False):
        super().__init__(name, info, doc, features)
        self.base_name = base_name
        self.base = None
        self.local_members = members
        self.implicit = implicit
        self.discriminator = None   # Member of all_members()
        self.variants = []          # (enum value, ObjectType or None, info)
        self.is_union = False

    def all_members(self):
        base = self.base.all_members() if self.base else []
        return base + self.local_members

    def json_kind(self):
        return 'object'


class AlternateType(Type):
    meta = 'alternate'

    def __init__(self, name, info, doc, features, branches):
        super().__init__(name, info, doc, features)
        self.branches = branches    # list of Member

    def json_kind(self):
        return 'alternate'


class Command(Entity):
    meta = 'command'

    def __init__(self, name, info, doc, features, arg_type, ret_name,
                 ret_is_list, boxed, gen):
        super().__init__(name, info, doc, features)
        self.arg_type = arg_type    # ObjectType or type name or None
        self.ret_name = ret_name
        self.ret_is_list = ret_is_list
        self.ret_type = None
        self.boxed = boxed
        self.gen = gen


class Event(Entity):
    meta = 'event'

    def __init__(self, name, info, doc, features, arg_type, boxed):
        super().__init__(name, info, doc, features)
        self.arg_type = arg_type
        self.boxed = boxed


# ---------------------------------------------------------------------------
# Checking expressions

EXPR_KEYS = {
    'enum': ({'enum', 'data'}, {'prefix', 'features'}),
    'struct': ({'struct', 'data'}, {'base', 'features'}),
    'union': ({'union', 'base', 'discriminator', 'data'}, {'features'}),
    'alternate': ({'alternate', 'data'}, {'features'}),
    'command': ({'command'}, {'data', 'returns', 'boxed', 'gen',
                              'features'}),
    'event': ({'event'}, {'data', 'boxed', 'features'}),
    'pragma': ({'pragma'}, set()),
}


def check_keys(expr, meta):
    required, optional = EXPR_KEYS[meta]
    for key in expr:
        if key not in required and key not in optional:
            raise QAPIError(expr.where(key), "%s '%s' has unknown key '%s'"
                            % (meta, expr[meta], key)
                            if meta != 'pragma' else
                            "pragma has unknown key '%s'" % key)
    for key in sorted(required):
        if key not in expr:
            raise QAPIError(expr.info, "%s '%s' lacks key '%s'"
                            % (meta, expr[meta], key))


def check_name(name, regex, info, what, allow_underscore=False):
    if not isinstance(name, str):
        raise QAPIError(info, '%s name must be a string' % what)
    test = name.replace('_', '-') if allow_underscore else name
    if not regex.match(test):
        raise QAPIError(info, "%s has an invalid name '%s'" % (what, name))
    if name.endswith('List') and regex is TYPE_NAME_RE:
        raise QAPIError(info, "%s name '%s' must not end in 'List'"
                        % (what, name))


def parse_features(expr, where):
    feats = expr.get('features', [])
    info = expr.where('features')
    if not isinstance(feats, list):
        raise QAPIError(info, "%s: 'features' must be a list" % where)
    names = []
    for f in feats:
        if isinstance(f, dict):
            if set(f) != {'name'}:
                raise QAPIError(info, "%s: a feature must be a name or "
                                "{'name': NAME}" % where)
            f = f['name']
        check_name(f, LOWER_NAME_RE, info, '%s feature' % where)
        if f in names:
            raise QAPIError(info, "%s: duplicate feature '%s'" % (where, f))
        names.append(f)
    return names


def parse_type_ref(value, info, where):
    """'T' or ['T'] -> (name, is_list)."""
    if isinstance(value, str):
        return value, False
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], str):
            raise QAPIError(info, "%s: a list type must be ['TYPE'] with "
                            "exactly one type name" % where)
        return value[0], True
    raise QAPIError(info, '%s: type must be a name or a one-element list'
                    % where)


# Types whose members may use '_' (QEMU's historic names such as
# 'backing_file_depth'); set by the 'member-name-exceptions' pragma.
MEMBER_NAME_EXCEPTIONS = set()


def parse_members(data, info, where, owner):
    """A 'data' dict of members -> list of Member."""
    if not isinstance(data, dict):
        raise QAPIError(info, "%s: 'data' must be an object" % where)
    members = []
    seen = {}
    for key, value in data.items():
        minfo = data.where(key) if hasattr(data, 'where') else info
        optional = key.startswith('*')
        name = key[1:] if optional else key
        check_name(name, LOWER_NAME_RE, minfo, "%s member" % where,
                   owner in MEMBER_NAME_EXCEPTIONS)
        if name.startswith('has-') or name.startswith('has_'):
            # C reserves has_<m> for the presence flags of optional members.
            raise QAPIError(minfo, "%s member '%s': names beginning with "
                            "'has-' are reserved" % (where, name))
        feats = []
        if isinstance(value, dict):
            extra = set(value) - {'type', 'features'}
            if extra or 'type' not in value:
                raise QAPIError(minfo, "%s member '%s': expected keys "
                                "'type' and optionally 'features'"
                                % (where, name))
            feats = parse_features(value, "%s member '%s'" % (where, name))
            value = value['type']
        tname, is_list = parse_type_ref(value, minfo, "%s member '%s'"
                                        % (where, name))
        cname = c_name(name)
        if cname in seen:
            raise QAPIError(minfo, "%s: member '%s' collides with member "
                            "'%s'" % (where, name, seen[cname]))
        seen[cname] = name
        members.append(Member(name, (tname, is_list), optional, minfo,
                              feats))
    return members


class Schema:
    """The checked schema.  Entities are kept in definition order."""

    def __init__(self, path):
        self.types = {}
        self.entities = []      # user definitions, in order
        self.commands = []
        self.events = []
        self.free_docs = []     # (position, Doc) free-form doc blocks
        self.doc_order = []     # Docs of definitions and free text, in order
        self.pragma = {'doc-required': False, 'command-name-exceptions': []}
        self.list_types = {}
        for name in BuiltinType.TABLE:
            self.types[name] = BuiltinType(name)
        items, self.files = read_schema(path)
        self._read(items)
        self._resolve()
        self._check_docs()

    # -- first pass: expressions to entities

    def _read(self, items):
        pending_exprs = []
        for expr, docs, _ in items:
            defdoc = None
            for i, doc in enumerate(docs):
                if doc.symbol is None:
                    self.doc_order.append(doc)
                    continue
                if i != len(docs) - 1 or expr is None:
                    raise QAPIError(doc.info, "documentation for '%s' is "
                                    "not followed by the definition"
                                    % doc.symbol)
                defdoc = doc
                self.doc_order.append(doc)
            if expr is None:
                continue
            if 'pragma' in expr:
                if defdoc:
                    raise QAPIError(defdoc.info, "doc comment before "
                                    "'pragma'")
                self._pragma(expr)
                continue
            pending_exprs.append((expr, defdoc))
        for expr, doc in pending_exprs:
            self._define(expr, doc)

    def _pragma(self, expr):
        check_keys(expr, 'pragma')
        prag = expr['pragma']
        if not isinstance(prag, dict):
            raise QAPIError(expr.info, "value of 'pragma' must be an object")
        for key, value in prag.items():
            info = prag.where(key)
            if key == 'doc-required':
                if not isinstance(value, bool):
                    raise QAPIError(info, "pragma 'doc-required' must be "
                                    "true or false")
            elif key == 'member-name-exceptions':
                if not isinstance(value, list) or \
                        not all(isinstance(v, str) for v in value):
                    raise QAPIError(info, "pragma 'member-name-exceptions'"
                                    " must be a list of strings")
                MEMBER_NAME_EXCEPTIONS.update(value)
            elif key == 'command-name-exceptions':
                if not isinstance(value, list) or \
                        not all(isinstance(v, str) for v in value):
                    raise QAPIError(info, "pragma 'command-name-exceptions'"
                                    " must be a list of strings")
            else:
                raise QAPIError(info, "unknown pragma '%s'" % key)
            self.pragma[key] = value

    def _meta_of(self, expr):
        metas = [m for m in EXPR_KEYS if m in expr and m != 'pragma']
        if len(metas) != 1:
            raise QAPIError(expr.info, 'expression must have exactly one '
                            'of the keys %s' % ', '.join(
                                "'%s'" % m for m in EXPR_KEYS))
        return metas[0]

    def _add_type(self, typ):
        if typ.name in self.types:
            other = self.types[typ.name]
            if isinstance(other, BuiltinType):
                raise QAPIError(typ.info, "'%s' is a built-in type"
                                % typ.name)
            raise QAPIError(typ.info, "'%s' is already defined at line %d"
                            % (typ.name, other.info.line))
        self.types[typ.name] = typ

    def _define(self, expr, doc):
        meta = self._meta_of(expr)
        check_keys(expr, meta)
        name = expr[meta]
        info = expr.info
        if isinstance(self.types.get(name), BuiltinType):
            raise QAPIError(info, "'%s' is a built-in type" % name)
        if meta == 'command':
            allow_us = name in self.pragma['command-name-exceptions']
            check_name(name, LOWER_NAME_RE, info, 'command', allow_us)
        elif meta == 'event':
            check_name(name, EVENT_NAME_RE, info, 'event')
        else:
            check_name(name, TYPE_NAME_RE, info, meta)
        if self.pragma['doc-required'] and doc is None:
            raise QAPIError(info, "documentation comment required for "
                            "%s '%s'" % (meta, name))
        if doc is not None and doc.symbol != name:
            raise QAPIError(doc.info, "documentation comment is for '%s' "
                            "but the definition is '%s'"
                            % (doc.symbol, name))
        where = "%s '%s'" % (meta, name)
        feats = parse_features(expr, where)
        ent = getattr(self, '_def_' + meta)(expr, name, info, doc, feats,
                                            where)
        if doc is not None:
            doc.entity = ent
        self.entities.append(ent)

    def _def_enum(self, expr, name, info, doc, feats, where):
        data = expr['data']
        dinfo = expr.where('data')
        if not isinstance(data, list):
            raise QAPIError(dinfo, "%s: 'data' must be a list" % where)
        values = []
        for v in data:
            vfeats = []
            if isinstance(v, dict):
                if 'name' not in v or set(v) - {'name', 'features'}:
                    raise QAPIError(dinfo, "%s: a value must be a name or "
                                    "{'name': NAME, 'features': [...]}"
                                    % where)
                vfeats = parse_features(v, where)
                v = v['name']
            check_name(v, ENUM_VALUE_RE, dinfo, '%s value' % where)
            if any(c_name(v) == c_name(x.name) for x in values):
                raise QAPIError(dinfo, "%s: duplicate value '%s'"
                                % (where, v))
            values.append(Member(v, None, False, dinfo, vfeats))
        prefix = expr.get('prefix')
        if prefix is not None and (not isinstance(prefix, str) or
                                   not re.match(r'[A-Z][A-Z0-9_]*$', prefix)):
            raise QAPIError(expr.where('prefix'), "%s: 'prefix' must be an "
                            "upper-case C identifier" % where)
        typ = EnumType(name, info, doc, feats, values, prefix)
        self._add_type(typ)
        return typ

    def _def_struct(self, expr, name, info, doc, feats, where):
        members = parse_members(expr['data'], expr.where('data'), where,
                                name)
        base = expr.get('base')
        if base is not None and not isinstance(base, str):
            raise QAPIError(expr.where('base'), "%s: 'base' must be a type "
                            "name" % where)
        typ = ObjectType(name, info, doc, feats, base, members)
        typ.base_info = expr.where('base')
        self._add_type(typ)
        return typ

    def _def_union(self, expr, name, info, doc, feats, where):
        base = expr['base']
        binfo = expr.where('base')
        if isinstance(base, dict):
            bmembers = parse_members(base, binfo, where, name)
            implicit = ObjectType('q_obj_%s-base' % name, info, None, [],
                                  None, bmembers, implicit=True)
            self.types[implicit.name] = implicit
            base = implicit.name
        elif not isinstance(base, str):
            raise QAPIError(binfo, "%s: 'base' must be a type name or an "
                            "object of members" % where)
        data = expr['data']
        if not isinstance(data, dict):
            raise QAPIError(expr.where('data'), "%s: 'data' must be an "
                            "object" % where)
        discr = expr['discriminator']
        if not isinstance(discr, str):
            raise QAPIError(expr.where('discriminator'), "%s: "
                            "'discriminator' must be a member name" % where)
        typ = ObjectType(name, info, doc, feats, base, [])
        typ.is_union = True
        typ.base_info = binfo
        typ.discr_name = discr
        typ.discr_info = expr.where('discriminator')
        typ.branch_refs = []
        for key, value in data.items():
            vinfo = data.where(key)
            if isinstance(value, dict):
                if set(value) != {'type'}:
                    raise QAPIError(vinfo, "%s branch '%s': expected "
                                    "{'type': NAME}" % (where, key))
                value = value['type']
            if not isinstance(value, str):
                raise QAPIError(vinfo, "%s branch '%s' must name a struct "
                                "type" % (where, key))
            typ.branch_refs.append((key, value, vinfo))
        self._add_type(typ)
        return typ

    def _def_alternate(self, expr, name, info, doc, feats, where):
        members = parse_members(expr['data'], expr.where('data'), where,
                                name)
        if not members:
            raise QAPIError(expr.where('data'), '%s has no branches' % where)
        for m in members:
            if m.optional:
                raise QAPIError(m.info, "%s branch '%s' cannot be optional"
                                % (where, m.name))
            if m.type_name[1]:
                raise QAPIError(m.info, "%s branch '%s' cannot be a list"
                                % (where, m.name))
        typ = AlternateType(name, info, doc, feats, members)
        self._add_type(typ)
        return typ

    def _args(self, expr, name, where, suffix):
        data = expr.get('data')
        boxed = expr.get('boxed', False)
        if not isinstance(boxed, bool):
            raise QAPIError(expr.where('boxed'), "%s: 'boxed' must be true "
                            "or false" % where)
        if data is None:
            if boxed:
                raise QAPIError(expr.where('boxed'), "%s: 'boxed': true "
                                "requires 'data'" % where)
            return None, boxed
        if isinstance(data, str):
            return data, boxed
        if boxed:
            raise QAPIError(expr.where('data'), "%s: 'boxed': true requires "
                            "'data' to name a struct or union" % where)
        members = parse_members(data, expr.where('data'), where, name)
        implicit = ObjectType('q_obj_%s-%s' % (name, suffix), expr.info,
                              None, [], None, members, implicit=True)
        self.types[implicit.name] = implicit
        return implicit, boxed

    def _def_command(self, expr, name, info, doc, feats, where):
        for other in self.commands:
            if other.name == name:
                raise QAPIError(info, "command '%s' is already defined at "
                                "line %d" % (name, other.info.line))
        arg, boxed = self._args(expr, name, where, 'arg')
        ret_name, ret_list = None, False
        if 'returns' in expr:
            ret_name, ret_list = parse_type_ref(
                expr['returns'], expr.where('returns'), where)
        gen = expr.get('gen', True)
        if not isinstance(gen, bool):
            raise QAPIError(expr.where('gen'), "%s: 'gen' must be true or "
                            "false" % where)
        cmd = Command(name, info, doc, feats, arg, ret_name, ret_list,
                      boxed, gen)
        cmd.expr = expr
        self.commands.append(cmd)
        return cmd

    def _def_event(self, expr, name, info, doc, feats, where):
        for other in self.events:
            if other.name == name:
                raise QAPIError(info, "event '%s' is already defined at "
                                "line %d" % (name, other.info.line))
        arg, boxed = self._args(expr, name, where, 'arg')
        ev = Event(name, info, doc, feats, arg, boxed)
        ev.expr = expr
        self.events.append(ev)
        return ev

    # -- second pass: resolve names and check cross-references

    def lookup(self, ref, info, where):
        name, is_list = ref
        typ = self.types.get(name)
        if typ is None:
            raise QAPIError(info, "%s uses unknown type '%s'"
                            % (where, name))
        if is_list:
            return self.list_of(typ)
        return typ

    def list_of(self, typ):
        if typ.name not in self.list_types:
            self.list_types[typ.name] = ListType(typ)
        return self.list_types[typ.name]

    def _resolve_members(self, members, where):
        for m in members:
            m.type = self.lookup(m.type_name, m.info,
                                 "%s member '%s'" % (where, m.name))

    def _resolve(self):
        objects = [t for t in self.types.values()
                   if isinstance(t, ObjectType)]
        for t in objects:
            self._resolve_members(t.local_members, self._where(t))
        for t in objects:
            self._resolve_base(t, [])
        for t in objects:
            self._check_member_clash(t)
            if t.is_union:
                self._resolve_union(t)
        for t in self.types.values():
            if isinstance(t, AlternateType):
                self._resolve_alternate(t)
        for cmd in self.commands:
            self._resolve_args(cmd)
            if cmd.ret_name is not None:
                typ = self.lookup((cmd.ret_name, cmd.ret_is_list),
                                  cmd.expr.where('returns'),
                                  "command '%s'" % cmd.name)
                cmd.ret_type = typ
        for ev in self.events:
            self._resolve_args(ev)

    def _where(self, t):
        if t.implicit:
            return "%s '%s'" % ('arguments of', t.name)
        return "%s '%s'" % ('union' if t.is_union else 'struct', t.name)

    def _resolve_base(self, t, stack):
        if t.base_name is None or t.base is not None:
            return
        if t.name in stack:
            raise QAPIError(t.info, "object '%s' is its own base" % t.name)
        base = self.types.get(t.base_name)
        where = self._where(t)
        if base is None:
            raise QAPIError(t.base_info, "%s uses unknown type '%s'"
                            % (where, t.base_name))
        if not isinstance(base, ObjectType) or base.is_union:
            raise QAPIError(t.base_info, "%s: 'base' must name a struct, "
                            "not '%s'" % (where, t.base_name))
        self._resolve_base(base, stack + [t.name])
        t.base = base

    def _check_member_clash(self, t):
        seen = {}
        for m in t.all_members():
            if m.c_name() in seen:
                raise QAPIError(m.info, "%s: member '%s' clashes with "
                                "member '%s' of its base"
                                % (self._where(t), m.name, seen[m.c_name()]))
            seen[m.c_name()] = m.name

    def _resolve_union(self, t):
        where = self._where(t)
        for m in t.all_members():
            if m.c_name() == 'u':
                # The C struct keeps its branches in a union named 'u'.
                raise QAPIError(m.info, "%s: member 'u' is reserved in "
                                "unions" % where)
        discr = None
        for m in t.all_members():
            if m.name == t.discr_name:
                discr = m
        if discr is None:
            base = 'the base' if t.base.implicit else \
                "base '%s'" % t.base.name
            raise QAPIError(t.discr_info, "%s: discriminator '%s' is not a "
                            "member of %s" % (where, t.discr_name, base))
        if not isinstance(discr.type, EnumType) or discr.optional:
            raise QAPIError(t.discr_info, "%s: discriminator '%s' must be a "
                            "mandatory member of enum type" % (where,
                                                               discr.name))
        t.discriminator = discr
        values = [v.name for v in discr.type.values]
        seen = set()
        branches = {}
        for key, tname, vinfo in t.branch_refs:
            if key not in values:
                raise QAPIError(vinfo, "%s: branch '%s' is not a value of "
                                "%s '%s'" % (where, key, 'enum',
                                             discr.type.name))
            if key in seen:
                raise QAPIError(vinfo, "%s: duplicate branch '%s'"
                                % (where, key))
            seen.add(key)
            btype = self.lookup((tname, False), vinfo,
                                "%s branch '%s'" % (where, key))
            if not isinstance(btype, ObjectType) or btype.is_union:
                raise QAPIError(vinfo, "%s branch '%s' must name a struct "
                                "type, not '%s'" % (where, key, tname))
            names = {m.c_name() for m in t.all_members()}
            for bm in btype.all_members():
                if bm.c_name() in names:
                    raise QAPIError(vinfo, "%s branch '%s': member '%s' "
                                    "clashes with a member of the base"
                                    % (where, key, bm.name))
            branches[key] = btype
        t.variants = [(v, branches.get(v)) for v in values]

    def _resolve_alternate(self, t):
        where = "alternate '%s'" % t.name
        self._resolve_members(t.branches, where)
        kinds = {}
        for m in t.branches:
            kind = m.type.json_kind()
            if kind in (None, 'alternate', 'array'):
                raise QAPIError(m.info, "%s branch '%s' cannot have type "
                                "'%s'" % (where, m.name, m.type.name))
            # JSON cannot tell an integer for 'int' from one for 'number'.
            clash_kinds = {'int': ('int', 'number'),
                           'number': ('int', 'number')}.get(kind, (kind,))
            for k in clash_kinds:
                if k in kinds:
                    raise QAPIError(m.info, "%s branch '%s' can't be "
                                    "distinguished from '%s'"
                                    % (where, m.name, kinds[k]))
            kinds[kind] = m.name

    def _resolve_args(self, ent):
        where = "%s '%s'" % (ent.meta, ent.name)
        arg = ent.arg_type
        if isinstance(arg, str):
            info = ent.expr.where('data')
            typ = self.lookup((arg, False), info, where)
            if not isinstance(typ, ObjectType):
                raise QAPIError(info, "%s: 'data' must name a struct%s, not "
                                "'%s'" % (where, ' or union' if ent.boxed
                                          else '', arg))
            if typ.is_union and not ent.boxed:
                raise QAPIError(info, "%s: 'data' names union '%s', which "
                                "needs 'boxed': true" % (where, arg))
            ent.arg_type = typ

    # -- doc comments

    def _check_docs(self):
        for ent in self.entities:
            doc = ent.doc
            if doc is None:
                continue
            names = self._documentable(ent)
            seen = set()
            for sec in doc.members + doc.features:
                if (sec.kind, sec.name) in seen:
                    raise QAPIError(sec.info, "'@%s:' is documented twice"
                                    % sec.name)
                seen.add((sec.kind, sec.name))
            for sec in doc.members:
                if sec.name not in names:
                    raise QAPIError(sec.info, "the definition of '%s' has "
                                    "no member '%s'" % (ent.name, sec.name))
            feats = set(ent.features)
            for sec in doc.features:
                if sec.name not in feats:
                    raise QAPIError(sec.info, "the definition of '%s' has "
                                    "no feature '%s'" % (ent.name, sec.name))

    def _documentable(self, ent):
        if isinstance(ent, EnumType):
            return {v.name for v in ent.values}
        if isinstance(ent, AlternateType):
            return {m.name for m in ent.branches}
        if isinstance(ent, ObjectType):
            members = list(ent.local_members)
            if ent.is_union and ent.base and ent.base.implicit:
                members = ent.base.local_members
            return {m.name for m in members}
        arg = ent.arg_type
        if arg is None:
            return set()
        if arg.implicit:
            return {m.name for m in arg.local_members}
        return set()

    # -- queries for the generators

    def object_types(self):
        return [t for t in self.types.values() if isinstance(t, ObjectType)]

    def user_types(self):
        """Named and implicit types in definition order."""
        return [t for t in self.types.values()
                if not isinstance(t, BuiltinType)]
