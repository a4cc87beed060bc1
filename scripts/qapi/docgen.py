"""
The QMP reference (Markdown) from the schema's doc comments: one section
per command, event and type in schema order, with the description, a table
of arguments or members, returns, since, notes and examples.  Free-form
doc blocks ('= Heading') become the chapter structure.
"""

from .schema import (AlternateType, Command, EnumType, Event, ObjectType)


# The features with a meaning for users, flagged at the top of a section.
SPECIAL_FEATURES = (
    ('deprecated', '**Deprecated**: will be removed; do not use in new '
     'clients.'),
    ('unstable', '**Unstable**: experimental, may change or disappear.'),
)


def _type_ref(t):
    if t is None:
        return ''
    if t.meta == 'array':
        return '[%s]' % t.element.name
    return t.name


def _one_line(text):
    return ' '.join(text.split()).replace('|', '\\|')


def _member_rows(doc, members):
    rows = []
    for m in members:
        sec = doc.member(m.name) if doc else None
        desc = _one_line(sec.text()) if sec and sec.text() else \
            'Not documented'
        feats = ''
        if m.features:
            feats = ' Features: %s.' % ', '.join(
                '**%s**' % f if f in dict(SPECIAL_FEATURES) else f
                for f in m.features)
        if m.type is None:
            rows.append('| `%s` | %s%s |' % (m.name, desc, feats))
            continue
        opt = ' (optional)' if m.optional else ''
        rows.append('| `%s` | %s%s | %s%s |' % (m.name, _type_ref(m.type),
                                                opt, desc, feats))
    return rows


def _table(title, doc, members, out):
    if not members:
        return
    out.append('**%s**' % title)
    out.append('')
    if members[0].type is None:
        out.append('| Value | Description |')
        out.append('|-------|-------------|')
    else:
        out.append('| Name | Type | Description |')
        out.append('|------|------|-------------|')
    out.extend(_member_rows(doc, members))
    out.append('')


def _free(doc, out):
    for linfo_text in doc.body.lines:
        line = linfo_text
        stripped = line.strip()
        if stripped.startswith('='):
            level = len(stripped) - len(stripped.lstrip('='))
            out.append('%s %s' % ('#' * level, stripped.lstrip('= ')))
            out.append('')
        else:
            out.append(line)
    out.append('')


def _kind(ent):
    if isinstance(ent, Command):
        return 'Command'
    if isinstance(ent, Event):
        return 'Event'
    if isinstance(ent, EnumType):
        return 'Enum'
    if isinstance(ent, AlternateType):
        return 'Alternate'
    if isinstance(ent, ObjectType):
        return 'Union' if ent.is_union else 'Struct'
    return ''


def _definition(ent, out):
    doc = ent.doc
    out.append('### `%s` (%s)' % (ent.name, _kind(ent)))
    out.append('')
    for feat, note in SPECIAL_FEATURES:
        if feat in ent.features:
            out.append('> %s' % note)
            out.append('')
    if doc and doc.body.text():
        out.append(doc.body.text())
        out.append('')
    if isinstance(ent, EnumType):
        _table('Values', doc, ent.values, out)
    elif isinstance(ent, AlternateType):
        _table('Alternatives', doc, ent.branches, out)
    elif isinstance(ent, ObjectType):
        if ent.base is not None and not ent.base.implicit:
            out.append('Members of `%s`, and:' % ent.base.name)
            out.append('')
            _table('Members', doc, ent.local_members, out)
        else:
            _table('Members', doc, ent.all_members(), out)
        branches = [(v, bt) for v, bt in ent.variants if bt is not None]
        for v, bt in branches:
            out.append('When `%s` is `%s`: the members of `%s`.'
                       % (ent.discriminator.name, v, bt.name))
            out.append('')
    else:
        arg = ent.arg_type
        if arg is not None and arg.implicit:
            _table('Arguments', doc, arg.all_members(), out)
        elif arg is not None:
            out.append('**Arguments:** the members of `%s`.' % arg.name)
            out.append('')
    returns = [sec for sec in (doc.sections if doc else [])
               if sec.name == 'Returns']
    if isinstance(ent, Command) and ent.ret_type is not None:
        text = ' '.join(sec.text() for sec in returns)
        out.append('**Returns:** `%s`%s' % (_type_ref(ent.ret_type),
                                            ' ' + text if text else ''))
        out.append('')
        returns = []
    if doc and doc.tail.text():
        out.append(doc.tail.text())
        out.append('')
    if ent.features:
        out.append('**Features:**')
        out.append('')
        for f in ent.features:
            sec = None
            for s in (doc.features if doc else []):
                if s.name == f:
                    sec = s
            text = _one_line(sec.text()) if sec else 'Not documented'
            out.append('- `%s`: %s' % (f, text))
        out.append('')
    for sec in (doc.sections if doc else []):
        if sec.name == 'Returns' and not returns:
            continue
        text = sec.text()
        if sec.name.startswith('Example'):
            out.append('**%s:**' % sec.name)
            out.append('')
            out.append('```')
            out.append(text)
            out.append('```')
        elif '\n' in text:
            out.append('**%s:**' % sec.name)
            out.append('')
            out.append(text)
        else:
            out.append('**%s:** %s' % (sec.name, text))
        out.append('')


def gen_doc(schema):
    out = ['<!-- Generated by scripts/qapi-gen.py from qapi/*.json: '
           'do not edit. -->', '']
    for doc in schema.doc_order:
        if doc.symbol is None:
            _free(doc, out)
        else:
            _definition(doc.entity, out)
    return '\n'.join(out).rstrip('\n') + '\n'
