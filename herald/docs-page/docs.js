// Herald's API reference (/docs): fetches the OpenAPI document at /openapi.json and renders it.
//
// The page's Content-Security-Policy allows no inline script or style and nothing from another
// origin, so everything is built here with createElement. Text from the document is only ever
// set as text (textContent, or strings passed to append), never parsed as HTML: a description
// cannot inject markup. The small Markdown subset descriptions use is rendered the same way.

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'];
const SCHEMA_PREFIX = '#/components/schemas/';
const COMPOSITIONS = { oneOf: 'one of', anyOf: 'any of', allOf: 'all of' };
const REASONS = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 301: 'Moved Permanently',
  302: 'Found', 304: 'Not Modified', 307: 'Temporary Redirect', 308: 'Permanent Redirect',
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 406: 'Not Acceptable', 408: 'Request Timeout', 409: 'Conflict', 410: 'Gone',
  412: 'Precondition Failed', 413: 'Content Too Large', 415: 'Unsupported Media Type',
  422: 'Unprocessable Content', 425: 'Too Early', 429: 'Too Many Requests', 500: 'Internal Server Error',
  501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
  '1XX': 'Any informational status', '2XX': 'Any success status', '3XX': 'Any redirection',
  '4XX': 'Any client error', '5XX': 'Any server error', default: 'Any other status',
};

/** The OpenAPI document, once loaded. */
let spec = {};
/** Every rendered operation and webhook: { kind, method, path|name, op, id, tags, haystack, section, navItems }. */
let entries = [];
/** Every rendered schema: { name, id, haystack, section, navItems }. */
let schemas = [];
/** Schema name → element id, so references can link to the schema's section. */
const schemaIds = new Map();

// ---------------------------------------------------------------------------------------------
// DOM helpers

/** Creates an element; `props` become attributes (class → className, text → textContent). */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  return append(node, children);
}

/** Appends nodes and strings (as text, never markup), skipping null, undefined and false. */
function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A value as JSON, for enums, defaults and examples (a string shows its quotes: it is JSON). */
function json(value) {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** Something safe to use in an element id and a URL fragment. */
function slug(text) {
  return String(text).replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '') || 'x';
}

/** `base`, or `base-2`, `base-3`… when taken: two paths may differ only in characters slug drops. */
function uniqueId(base, used) {
  let id = base;
  for (let n = 2; used.has(id); n += 1) id = `${base}-${n}`;
  used.add(id);
  return id;
}

// ---------------------------------------------------------------------------------------------
// Markdown: the subset descriptions use (paragraphs, "- " lists, `code`, **bold**); the rest is text.

const INLINE = /`([^`\n]+)`|\*\*(\S(?:[^\n]*?\S)?)\*\*/g;

function inline(parent, text) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    parent.append(text.slice(last, match.index));
    if (match[1] !== undefined) parent.append(el('code', {}, match[1]));
    else parent.append(inline(el('strong'), match[2]));
    last = match.index + match[0].length;
  }
  parent.append(text.slice(last));
  return parent;
}

/** Renders a description, or returns null when there is none. */
function markdown(text, className = 'md') {
  if (typeof text !== 'string' || !text.trim()) return null;
  const box = el('div', { class: className });
  for (const block of text.replace(/\r\n?/g, '\n').split(/\n[ \t]*\n/)) {
    let paragraph = [];
    let list = null;
    const endParagraph = () => {
      if (paragraph.length) box.append(inline(el('p'), paragraph.join(' ')));
      paragraph = [];
    };
    for (const line of block.split('\n')) {
      const bullet = /^\s*- (.*)$/.exec(line);
      if (bullet) {
        endParagraph();
        if (!list) box.append((list = el('ul')));
        list.append(inline(el('li'), bullet[1].trim()));
      } else if (list && /^\s+\S/.test(line)) {
        // An indented line after a bullet continues that bullet (wrapped source text).
        inline(list.lastChild, ` ${line.trim()}`);
      } else if (line.trim()) {
        list = null;
        paragraph.push(line.trim());
      }
    }
    endParagraph();
  }
  return box;
}

// ---------------------------------------------------------------------------------------------
// References

/** The value a local JSON pointer reference (`#/a/b`) points at, or undefined. */
function pointer(ref) {
  if (typeof ref !== 'string' || !ref.startsWith('#/')) return undefined;
  let node = spec;
  for (const raw of ref.slice(2).split('/')) {
    let part;
    try {
      part = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    } catch {
      return undefined;
    }
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, part)) return undefined;
    node = node[part];
  }
  return node;
}

function withoutRef(node) {
  const { $ref, ...rest } = node;
  return rest;
}

/**
 * Follows `$ref` for a parameter, request body, response, header or path item. Keywords beside
 * the reference (3.1 allows summary and description) win over the target's.
 */
function deref(node) {
  for (let hops = 0; node && typeof node === 'object' && typeof node.$ref === 'string' && hops < 32; hops += 1) {
    const target = pointer(node.$ref);
    if (!target || typeof target !== 'object') return node;
    node = { ...target, ...withoutRef(node) };
  }
  return node && typeof node === 'object' ? node : {};
}

function schemaName(ref) {
  if (typeof ref !== 'string' || !ref.startsWith(SCHEMA_PREFIX)) return null;
  try {
    return decodeURIComponent(ref.slice(SCHEMA_PREFIX.length)).replace(/~1/g, '/').replace(/~0/g, '~');
  } catch {
    return null;
  }
}

/** A link to a schema's section (or just its name, when the document lacks it). */
function schemaLink(name) {
  const id = schemaIds.get(name);
  return id ? el('a', { href: `#${id}`, class: 'schema-link' }, name) : el('span', { class: 'schema-missing', title: 'not in components.schemas' }, name);
}

// ---------------------------------------------------------------------------------------------
// Schemas

function isNullSchema(schema) {
  return !!schema && typeof schema === 'object' && (schema.type === 'null' || (Array.isArray(schema.type) && schema.type.length === 1 && schema.type[0] === 'null'));
}

/**
 * Looks through a schema's `$ref`s and through `oneOf: [{type: null}, X]` (how an optional X is
 * written) so a property shows what it holds. Returns the schema to describe (keywords beside a
 * reference win over the target's), the component names passed through, and whether null fits.
 */
function look(input) {
  // In 3.1 a schema may be a boolean: true allows anything, false nothing.
  let schema = input === false ? { not: {} } : input && typeof input === 'object' ? input : {};
  const refs = [];
  let nullable = schema.nullable === true;
  for (let hops = 0; hops < 32; hops += 1) {
    if (typeof schema.$ref === 'string') {
      const target = pointer(schema.$ref);
      if (!target || typeof target !== 'object') break;
      const name = schemaName(schema.$ref);
      if (name) refs.push(name);
      schema = { ...target, ...withoutRef(schema) };
      continue;
    }
    const kind = ['oneOf', 'anyOf'].find((k) => Array.isArray(schema[k]) && schema[k].length === 2 && schema[k].some(isNullSchema));
    if (kind && !schema.type && !schema.properties) {
      nullable = true;
      const { [kind]: variants, ...rest } = schema;
      schema = { ...variants.find((v) => !isNullSchema(v)), ...rest };
      continue;
    }
    break;
  }
  return { schema, refs, nullable: nullable || schema.nullable === true || typesOf(schema).includes('null') };
}

function typesOf(schema) {
  if (Array.isArray(schema.type)) return schema.type.map(String);
  return typeof schema.type === 'string' ? [schema.type] : [];
}

/** The type a schema declares or implies, without null (enum and const imply it from values). */
function baseTypes(schema) {
  const types = typesOf(schema).filter((t) => t !== 'null');
  if (types.length) return types;
  if (schema.properties || schema.additionalProperties || schema.patternProperties) return ['object'];
  if (schema.items || schema.prefixItems) return ['array'];
  const values = Array.isArray(schema.enum) ? schema.enum : 'const' in schema ? [schema.const] : [];
  const implied = [...new Set(values.filter((v) => v !== null).map((v) => (Array.isArray(v) ? 'array' : typeof v)))];
  return implied;
}

/** "string <date-time> | null", "array of EventSummary", "RetryPolicyRequest | null", with links. */
function typeLabel(input) {
  const { schema, refs, nullable } = look(input);
  const label = el('span', { class: 'type' });
  if (refs.length) {
    label.append(schemaLink(refs[0]));
    const base = baseTypes(schema).filter((t) => t !== 'object');
    if (base.length) label.append(` (${base.join(' | ')})`);
  } else if (typeof schema.$ref === 'string') {
    label.append(el('span', { class: 'schema-missing' }, `$ref ${schema.$ref}`));
  } else {
    const composition = Object.keys(COMPOSITIONS).find((k) => Array.isArray(schema[k]));
    const types = baseTypes(schema);
    const parts = types.map((type) => {
      if (type === 'array' && schema.items && typeof schema.items === 'object') return ['array of ', typeLabel(schema.items)];
      return schema.format && type !== 'object' ? `${type} <${schema.format}>` : type;
    });
    if (composition) parts.push(compositionLabel(COMPOSITIONS[composition], schema[composition]));
    if (!parts.length) parts.push(schema.not && !Object.keys(schema.not).length ? 'nothing' : 'any');
    parts.forEach((part, i) => append(label, [i ? ' | ' : '', part]));
  }
  if (nullable) label.append(' | null');
  return label;
}

/** "one of (Sli | string <uuid>)", "all of (Sli & object)": the first few variants' own labels. */
function compositionLabel(kind, variants) {
  const separator = kind === COMPOSITIONS.allOf ? ' & ' : ' | ';
  const shown = variants.slice(0, 4).map((variant, i) => [i ? separator : '', typeLabel(variant)]);
  return [`${kind} (`, shown, variants.length > 4 ? `${separator}… ${variants.length - 4} more` : '', ')'];
}

/** A short labelled fact about a schema: "pattern ^a$", "minimum 0", "default 50". */
function chip(key, ...values) {
  return el('span', { class: 'chip' }, el('span', { class: 'chip-key' }, key), values.length ? ' ' : '', values);
}

function codeChip(key, value) {
  return chip(key, el('code', {}, value));
}

/** Constraints, defaults and examples of a (looked-through) schema, as chips. */
function constraints(schema) {
  const chips = [];
  if (Array.isArray(schema.enum)) chips.push(chip('one of', schema.enum.map((v) => [el('code', {}, json(v)), ' '])));
  if ('const' in schema) chips.push(codeChip('always', json(schema.const)));
  for (const key of ['pattern', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf',
    'minLength', 'maxLength', 'minItems', 'maxItems', 'minProperties', 'maxProperties', 'contentEncoding', 'contentMediaType']) {
    // In 3.0 exclusiveMinimum/Maximum are booleans qualifying minimum/maximum.
    if (typeof schema[key] === 'boolean') { if (schema[key]) chips.push(chip(key)); }
    else if (schema[key] !== undefined) chips.push(codeChip(key, String(schema[key])));
  }
  if (schema.uniqueItems) chips.push(chip('unique items'));
  if (schema.format && baseTypes(schema).includes('object')) chips.push(codeChip('format', schema.format));
  if (schema.additionalProperties === false) chips.push(chip('no other properties'));
  if ('default' in schema) chips.push(codeChip('default', json(schema.default)));
  if ('example' in schema) chips.push(codeChip('example', json(schema.example)));
  if (Array.isArray(schema.examples)) schema.examples.forEach((v) => chips.push(codeChip('example', json(v))));
  // An array of plain values shows its items' constraints here, as it has nothing to expand.
  if (schema.items && typeof schema.items === 'object' && !contents(schema.items)) {
    const itemChips = constraints(look(schema.items).schema);
    if (itemChips.length) chips.push(el('span', { class: 'chip-group' }, el('span', { class: 'chip-lead' }, 'each item:'), itemChips));
  }
  return chips;
}

/** Badges for required, deprecated, read-only and write-only. */
function flags(schema, required) {
  return [
    required && el('span', { class: 'flag flag-required' }, 'required'),
    schema.deprecated === true && el('span', { class: 'flag flag-deprecated' }, 'deprecated'),
    schema.readOnly === true && el('span', { class: 'flag' }, 'read-only'),
    schema.writeOnly === true && el('span', { class: 'flag' }, 'write-only'),
  ];
}

/**
 * What expanding a schema shows: its properties and its variants (oneOf, anyOf, allOf), or for
 * an array its items' contents. Null when there is nothing to expand. `refs` lists the
 * components passed through, to stop at recursion.
 */
function contents(input) {
  const { schema, refs } = look(input);
  const properties = schema.properties && typeof schema.properties === 'object' ? schema.properties : {};
  if (baseTypes(schema).includes('array') && !Object.keys(properties).length) {
    const inner = schema.items && typeof schema.items === 'object' ? contents(schema.items) : null;
    return inner && { ...inner, refs: [...refs, ...inner.refs], each: true };
  }
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  const rows = Object.entries(properties).map(([name, sub]) => ({ name, schema: sub, required: required.has(name) }));
  for (const [pattern, sub] of Object.entries(schema.patternProperties || {})) rows.push({ name: pattern, schema: sub, note: 'any key matching' });
  if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
    rows.push({ name: '*', schema: schema.additionalProperties, note: 'any other key' });
  }
  const propertyCount = rows.length;
  for (const kind of Object.keys(COMPOSITIONS)) {
    if (!Array.isArray(schema[kind])) continue;
    schema[kind].forEach((variant, i) => rows.push({ name: `${i + 1}`, schema: variant, variant: COMPOSITIONS[kind] }));
  }
  return rows.length ? { refs, rows, propertyCount, variantCount: rows.length - propertyCount } : null;
}

/** "6 properties", "each item: 8 properties", "2 variants (one of)". */
function contentsSummary(inner) {
  const parts = [];
  if (inner.propertyCount) parts.push(`${inner.propertyCount} ${inner.propertyCount === 1 ? 'property' : 'properties'}`);
  if (inner.variantCount) {
    const kinds = [...new Set(inner.rows.filter((r) => r.variant).map((r) => r.variant))].join(', ');
    parts.push(`${inner.variantCount} ${inner.variantCount === 1 ? 'variant' : 'variants'} (${kinds})`);
  }
  return `${inner.each ? 'each item: ' : ''}${parts.join(' and ')}`;
}

/**
 * A <details> showing a schema's contents. They are built when first opened: trees of schemas
 * that refer to each other would otherwise be built in full for every mention.
 */
function expander(inner, ancestors, open) {
  const details = el('details', { class: 'expander' }, el('summary', {}, contentsSummary(inner)));
  let built = false;
  const build = () => {
    if (built) return;
    built = true;
    details.append(el('ul', { class: 'schema-tree' }, inner.rows.map((row) => schemaRow(row, ancestors))));
  };
  details.addEventListener('toggle', () => { if (details.open) build(); });
  if (open) {
    build();
    details.open = true;
  }
  return details;
}

/** One property (or variant) of a schema tree: name, type, flags, constraints, description. */
function schemaRow(row, ancestors) {
  const { schema } = look(row.schema);
  const name = row.variant
    ? el('span', { class: 'variant-name' }, `${row.variant} #${row.name}`)
    : el('code', { class: 'prop-name' }, row.name);
  const item = el('li', { class: schema.deprecated === true ? 'prop is-deprecated' : 'prop' },
    el('div', { class: 'prop-line' }, name, row.note && el('span', { class: 'note' }, row.note),
      typeLabel(row.schema), flags(schema, row.required)));
  const chips = constraints(schema);
  if (chips.length) item.append(el('div', { class: 'chips' }, chips));
  append(item, [markdown(schema.description, 'md prop-description')]);
  const inner = contents(row.schema);
  if (inner) {
    const loop = inner.refs.find((ref) => ancestors.includes(ref));
    if (loop) item.append(el('p', { class: 'note' }, 'Recursive: this is ', schemaLink(loop), ' again, as above.'));
    else item.append(expander(inner, [...ancestors, ...inner.refs], false));
  }
  return item;
}

/**
 * A schema at the top of a body, response or schema section: its type, then its contents,
 * open or closed. `ownName` is the component being described, if any (for recursion).
 */
function schemaBlock(input, open, ownName, lead = el('span', { class: 'label' }, 'Schema')) {
  const { schema, refs } = look(input);
  const block = el('div', { class: 'schema-block' },
    el('div', { class: 'schema-head' }, lead, typeLabel(input), flags(schema, false)));
  const chips = constraints(schema);
  if (chips.length) block.append(el('div', { class: 'chips' }, chips));
  // A referenced component's own description is on its section; repeating it at every use is noise.
  if (!refs.length || ownName) append(block, [markdown(schema.description)]);
  const inner = contents(input);
  if (inner) block.append(expander(inner, [...(ownName ? [ownName] : []), ...inner.refs], open));
  return block;
}

// ---------------------------------------------------------------------------------------------
// Operations

function methodBadge(method) {
  return el('span', { class: `method method-${method}` }, method.toUpperCase());
}

/** Every operation of `paths`, then every operation of `webhooks`, with ids for anchors. */
function collectEntries(used) {
  const found = [];
  for (const [kind, map] of [['operation', spec.paths], ['webhook', spec.webhooks]]) {
    for (const [key, rawItem] of Object.entries(map && typeof map === 'object' ? map : {})) {
      const item = deref(rawItem);
      const methods = HTTP_METHODS.filter((m) => item[m] && typeof item[m] === 'object');
      for (const method of methods) {
        const op = item[method];
        const tags = Array.isArray(op.tags) && op.tags.length ? op.tags.map(String) : ['other'];
        const id = kind === 'operation'
          ? uniqueId(`op-${method.toUpperCase()}-${slug(key)}`, used)
          : uniqueId(`webhook-${slug(key)}${methods.length > 1 ? `-${method.toUpperCase()}` : ''}`, used);
        const haystack = [kind === 'webhook' ? 'webhook' : '', method, key, op.summary, op.operationId, ...tags].join(' ').toLowerCase();
        found.push({ kind, method, key, op, item, tags, id, haystack, navItems: [] });
      }
    }
  }
  return found;
}

/** Path-level parameters apply to every operation of the path unless it redefines them. */
function parametersOf(entry) {
  const own = (Array.isArray(entry.op.parameters) ? entry.op.parameters : []).map(deref);
  const shared = (Array.isArray(entry.item.parameters) ? entry.item.parameters : []).map(deref);
  const redefined = new Set(own.map((p) => `${p.in}:${p.name}`));
  return [...shared.filter((p) => !redefined.has(`${p.in}:${p.name}`)), ...own];
}

/** A parameter's or header's schema: `schema`, or the schema of its only `content` entry. */
function parameterSchema(param) {
  if (param.schema !== undefined) return param.schema;
  const media = param.content && Object.values(param.content)[0];
  return media && media.schema !== undefined ? media.schema : {};
}

function parametersTable(params, caption) {
  const rows = params.map((param) => {
    const schema = parameterSchema(param);
    const looked = look(schema).schema;
    const chips = constraints(looked);
    if ('example' in param) chips.push(codeChip('example', json(param.example)));
    return el('tr', { class: param.deprecated ? 'is-deprecated' : null },
      el('th', { scope: 'row' }, el('code', { class: 'param-name' }, param.name ?? '(unnamed)'),
        flags({ deprecated: param.deprecated }, param.required === true || param.in === 'path')),
      el('td', { 'data-label': 'In' }, param.in ?? ''),
      el('td', { 'data-label': 'Type' }, typeLabel(schema), chips.length ? el('div', { class: 'chips' }, chips) : null),
      el('td', { 'data-label': 'Description' }, markdown(param.description || looked.description)));
  });
  return el('table', { class: 'params' },
    el('caption', { class: 'visually-hidden' }, caption),
    el('thead', {}, el('tr', {}, ['Name', 'In', 'Type', 'Description'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows));
}

function subsection(title, ...children) {
  return el('div', { class: 'subsection' }, el('h4', {}, title), children);
}

function securityBlock(op) {
  const requirements = Array.isArray(op.security) ? op.security : Array.isArray(spec.security) ? spec.security : [];
  const alternatives = requirements.filter((r) => r && typeof r === 'object');
  if (!alternatives.length) return subsection('Authorization', el('p', { class: 'note' }, 'None: no credential is needed.'));
  const schemes = spec.components?.securitySchemes || {};
  const list = el('ul', { class: 'security' }, alternatives.map((requirement, i) => {
    const names = Object.keys(requirement);
    const lead = i ? 'or ' : '';
    if (!names.length) return el('li', {}, lead, 'no credential at all');
    return el('li', {}, lead, names.map((name, j) => {
      const scheme = deref(schemes[name]);
      const scopes = Array.isArray(requirement[name]) && requirement[name].length ? ` (scopes: ${requirement[name].join(', ')})` : '';
      return [j ? ' and ' : '', el('code', { class: 'scheme-name' }, name), el('span', { class: 'note' }, ` ${schemeKind(scheme)}${scopes}`),
        markdown(scheme.description, 'md scheme-description')];
    }));
  }));
  return subsection(alternatives.length > 1 ? 'Authorization (any one of)' : 'Authorization', list);
}

/** "bearer token in Authorization", "API key in header X-Key"… from a security scheme. */
function schemeKind(scheme) {
  if (scheme.type === 'http') return `HTTP ${scheme.scheme || ''}${/^bearer$/i.test(scheme.scheme || '') ? ' token in Authorization' : ''}`;
  if (scheme.type === 'apiKey') return `API key in ${scheme.in} ${scheme.name}`;
  return scheme.type ? String(scheme.type) : '(scheme not in components.securitySchemes)';
}

/** The content types of a body or response, each with its schema and examples. */
function mediaList(content, open) {
  return Object.entries(content && typeof content === 'object' ? content : {}).map(([type, media]) => {
    const contentType = el('code', { class: 'media-type', title: 'Content type' }, type);
    const block = el('div', { class: 'media' },
      media && media.schema !== undefined ? schemaBlock(media.schema, open, null, contentType) : el('div', { class: 'schema-head' }, contentType));
    const examples = [];
    if (media && 'example' in media) examples.push(['Example', media.example]);
    for (const [name, example] of Object.entries(media?.examples || {})) {
      const value = deref(example);
      if ('value' in value) examples.push([value.summary || name, value.value]);
    }
    for (const [label, value] of examples) {
      block.append(el('details', { class: 'example' }, el('summary', {}, label), el('pre', {}, JSON.stringify(value, null, 2))));
    }
    return block;
  });
}

function requestBodyBlock(op) {
  if (!op.requestBody) return null;
  const body = deref(op.requestBody);
  return el('div', { class: 'subsection request-body' },
    el('h4', {}, 'Request body ', el('span', { class: body.required ? 'flag flag-required' : 'flag' }, body.required ? 'required' : 'optional')),
    markdown(body.description), mediaList(body.content, true));
}

function statusClass(code) {
  const first = String(code)[0];
  return ['1', '2', '3', '4', '5'].includes(first) ? `status status-${first}xx` : 'status';
}

/** Sort key of a status: a class's own codes, then its range (4XX), then default. */
function statusOrder(code) {
  const text = String(code).toUpperCase();
  if (/^[1-5]\d\d$/.test(text)) return Number(text);
  if (/^[1-5]XX$/.test(text)) return Number(text[0]) * 100 + 99.5;
  return 1000;
}

function responsesBlock(op, title) {
  // Object keys that look like integers ("408") come before the others ("2XX") in JavaScript,
  // whatever the document's order: sort, so that ranges sit with their class.
  const responses = Object.entries(op.responses && typeof op.responses === 'object' ? op.responses : {})
    .sort(([a], [b]) => statusOrder(a) - statusOrder(b));
  if (!responses.length) return null;
  return subsection(title, el('ul', { class: 'responses' }, responses.map(([code, raw]) => {
    const response = deref(raw);
    const success = /^2/.test(code);
    const item = el('li', { class: 'response' },
      el('div', { class: 'response-head' }, el('span', { class: statusClass(code) }, code),
        el('span', { class: 'reason' }, REASONS[code] || REASONS[code.toUpperCase()] || '')),
      markdown(response.description));
    const headers = Object.entries(response.headers || {}).map(([name, header]) => ({ name, in: 'header', ...deref(header) }));
    if (headers.length) item.append(el('h5', {}, 'Headers'), parametersTable(headers, `Headers of the ${code} response`));
    append(item, [mediaList(response.content, success)]);
    return item;
  })));
}

function operationSection(entry) {
  const { op } = entry;
  const heading = el('h3', { class: 'op-title', id: `${entry.id}-title`, tabindex: '-1' },
    methodBadge(entry.method), ' ', el('code', { class: 'op-path' }, entry.key));
  const section = el('section', {
    class: `operation${entry.kind === 'webhook' ? ' webhook' : ''}${op.deprecated ? ' is-deprecated' : ''}`,
    id: entry.id, 'aria-labelledby': heading.id, 'data-method': entry.method.toUpperCase(),
    [entry.kind === 'webhook' ? 'data-webhook' : 'data-path']: entry.key,
  }, heading);
  if (op.summary) section.append(el('p', { class: 'op-summary' }, op.summary));
  const meta = [
    op.operationId && el('span', {}, 'operationId ', el('code', {}, op.operationId)),
    entry.kind === 'operation' && el('span', {}, entry.tags.length > 1 ? 'tags ' : 'tag ', entry.tags.join(', ')),
    op.deprecated && el('span', { class: 'flag flag-deprecated' }, 'deprecated'),
  ].filter(Boolean);
  if (meta.length) section.append(el('p', { class: 'op-meta' }, meta));
  append(section, [markdown(op.description)]);
  if (entry.kind === 'operation' || op.security) section.append(securityBlock(op));
  const params = parametersOf(entry);
  if (params.length) section.append(subsection(entry.kind === 'webhook' ? 'Headers and parameters sent' : 'Parameters', parametersTable(params, `Parameters of ${entry.method.toUpperCase()} ${entry.key}`)));
  append(section, [requestBodyBlock(op), responsesBlock(op, entry.kind === 'webhook' ? 'Answers Herald expects' : 'Responses')]);
  return section;
}

// ---------------------------------------------------------------------------------------------
// Schema sections

/** Every component schema named anywhere inside `node`, following references between schemas. */
function schemasUsedBy(node) {
  const found = new Set();
  const pending = [node];
  while (pending.length) {
    const current = pending.pop();
    if (Array.isArray(current)) { pending.push(...current); continue; }
    if (!current || typeof current !== 'object') continue;
    for (const [key, value] of Object.entries(current)) {
      if (key !== '$ref') { pending.push(value); continue; }
      const name = schemaName(value);
      if (name && !found.has(name)) {
        found.add(name);
        pending.push(pointer(value));
      } else if (!name && !found.has(value)) {
        found.add(value); // a reference to a parameter, response…: it may name schemas in turn
        pending.push(pointer(value));
      }
    }
  }
  return found;
}

function schemaSection(record, usedBy) {
  const heading = el('h3', { class: 'schema-title', id: `${record.id}-title`, tabindex: '-1' }, record.name);
  const section = el('section', { class: 'schema', id: record.id, 'aria-labelledby': heading.id, 'data-schema': record.name }, heading,
    schemaBlock(record.schema, true, record.name));
  if (usedBy.length) {
    section.append(el('details', { class: 'used-by' },
      el('summary', {}, `Used by ${usedBy.length} ${usedBy.length === 1 ? 'operation' : 'operations'}`),
      el('ul', {}, usedBy.map((entry) => el('li', {}, el('a', { href: `#${entry.id}` }, methodBadge(entry.method), ' ', el('code', {}, entry.key)))))));
  }
  return section;
}

// ---------------------------------------------------------------------------------------------
// Page

function renderHeader() {
  const info = spec.info || {};
  const title = info.title ? String(info.title) : 'API';
  document.getElementById('api-title').textContent = `${title} API reference`;
  document.title = `${title} API reference`;
  for (const [id, text] of [['api-version', info.version && `version ${info.version}`], ['spec-version', spec.openapi && `OpenAPI ${spec.openapi}`]]) {
    const node = document.getElementById(id);
    node.textContent = text || '';
    node.hidden = !text;
  }
  const description = document.getElementById('api-description');
  append(description, [markdown(info.description)]);
  if (info.license?.name) description.append(el('p', { class: 'note' }, `License: ${info.license.name}`));
}

/** Groups operations by their first tag, in the order of the document's `tags`, then as met. */
function tagGroups() {
  const declared = (Array.isArray(spec.tags) ? spec.tags : []).filter((t) => t && t.name).map((t) => String(t.name));
  const order = [...new Set([...declared, ...entries.filter((e) => e.kind === 'operation').flatMap((e) => e.tags)])];
  // "other" (untagged) goes last unless the document itself placed it.
  if (!declared.includes('other') && order.includes('other')) order.push(order.splice(order.indexOf('other'), 1)[0]);
  return order.map((tag) => ({
    tag,
    description: (spec.tags || []).find((t) => t && t.name === tag)?.description,
    entries: entries.filter((e) => e.kind === 'operation' && e.tags.includes(tag)),
  })).filter((group) => group.entries.length);
}

function navGroup(title, id, items) {
  return el('div', { class: 'nav-group', 'data-group': id },
    el('h2', { class: 'nav-heading' }, el('a', { href: `#${id}` }, title)),
    el('ul', {}, items));
}

function navOperation(entry) {
  const item = el('li', {}, el('a', { href: `#${entry.id}`, class: `nav-op${entry.op.deprecated ? ' is-deprecated' : ''}`, 'data-target': entry.id },
    methodBadge(entry.method), ' ', el('span', { class: 'nav-path' }, entry.key)));
  entry.navItems.push(item);
  return item;
}

function render() {
  const used = new Set(['main', 'contents', 'search', 'webhooks', 'schemas']);
  for (const name of Object.keys(spec.components?.schemas || {})) schemaIds.set(name, uniqueId(`schema-${slug(name)}`, used));
  entries = collectEntries(used);
  renderHeader();

  const main = document.getElementById('main');
  const nav = document.getElementById('contents-lists');
  const mainGroups = [];
  const navGroups = [];
  // An operation with several tags is listed under each but described once, under its first.
  const described = new Set();
  for (const group of tagGroups()) {
    const id = uniqueId(`tag-${slug(group.tag)}`, used);
    const sections = group.entries.filter((e) => !described.has(e)).map((e) => {
      described.add(e);
      return (e.section = operationSection(e));
    });
    mainGroups.push(el('section', { class: 'group', id, 'aria-labelledby': `${id}-title` },
      el('h2', { id: `${id}-title`, tabindex: '-1' }, group.tag), markdown(group.description), sections));
    navGroups.push(navGroup(group.tag, id, group.entries.map(navOperation)));
  }

  const webhooks = entries.filter((e) => e.kind === 'webhook');
  if (webhooks.length) {
    mainGroups.push(el('section', { class: 'group', id: 'webhooks', 'aria-labelledby': 'webhooks-title' },
      el('h2', { id: 'webhooks-title', tabindex: '-1' }, 'Webhooks'),
      el('p', { class: 'note' }, 'Requests sent to your endpoints: what they carry and the answers expected.'),
      webhooks.map((e) => (e.section = operationSection(e)))));
    navGroups.push(navGroup('Webhooks', 'webhooks', webhooks.map(navOperation)));
  }

  const usedBy = new Map(entries.map((e) => [e, schemasUsedBy(e.op)]));
  schemas = Object.entries(spec.components?.schemas || {}).map(([name, schema]) => ({ name, schema, id: schemaIds.get(name), haystack: `schema ${name}`.toLowerCase(), navItems: [] }));
  if (schemas.length) {
    for (const record of schemas) record.section = schemaSection(record, entries.filter((e) => usedBy.get(e).has(record.name)));
    mainGroups.push(el('section', { class: 'group', id: 'schemas', 'aria-labelledby': 'schemas-title' },
      el('h2', { id: 'schemas-title', tabindex: '-1' }, 'Schemas'), schemas.map((r) => r.section)));
    navGroups.push(navGroup('Schemas', 'schemas', schemas.map((record) => {
      const item = el('li', {}, el('a', { href: `#${record.id}`, class: 'nav-schema', 'data-target': record.id }, record.name));
      record.navItems.push(item);
      return item;
    })));
  }

  if (!mainGroups.length) mainGroups.push(el('p', { class: 'note' }, 'The document describes no operations and no schemas.'));
  document.getElementById('loading').remove();
  append(main, [el('p', { class: 'no-match', id: 'no-match', hidden: true }, 'Nothing matches the filter.'), mainGroups]);
  append(nav, navGroups);
}

// ---------------------------------------------------------------------------------------------
// Behaviour: filter, deep links, the contents toggle on narrow screens

function applyFilter(query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const matches = (record) => words.every((word) => record.haystack.includes(word));
  let shownOps = 0;
  let shownSchemas = 0;
  for (const record of [...entries, ...schemas]) {
    const show = matches(record);
    if (show) { if (record.kind) shownOps += 1; else shownSchemas += 1; }
    if (record.section) record.section.hidden = !show;
    for (const item of record.navItems) item.hidden = !show;
  }
  // A group (in the contents and in the reference) shows while any of its members does.
  for (const group of document.querySelectorAll('.nav-group, section.group')) {
    group.hidden = !group.querySelector(':scope > ul > li:not([hidden]), :scope > section:not([hidden])');
  }
  document.getElementById('no-match').hidden = shownOps + shownSchemas > 0;
  document.getElementById('filter-status').textContent = words.length
    ? `${shownOps} of ${entries.length} operations and ${shownSchemas} of ${schemas.length} schemas match`
    : '';
}

function targetFromHash() {
  let id;
  try {
    id = decodeURIComponent(location.hash.slice(1));
  } catch {
    return null;
  }
  const target = id && document.getElementById(id);
  return target && target.matches('section.operation, section.schema, section.group') ? target : null;
}

/** Marks the section the address names, in the reference and the contents, and goes there. */
function followHash() {
  for (const node of document.querySelectorAll('.is-selected')) node.classList.remove('is-selected');
  for (const node of document.querySelectorAll('[aria-current]')) node.removeAttribute('aria-current');
  const target = targetFromHash();
  if (!target) return;
  if (target.hidden || target.closest('[hidden]')) {
    // The filter hides it: a followed link should show what it names.
    document.getElementById('search').value = '';
    applyFilter('');
  }
  target.classList.add('is-selected');
  const navLink = document.querySelector(`#contents-lists a[href="#${CSS.escape(target.id)}"]`);
  if (navLink) {
    navLink.setAttribute('aria-current', 'location');
    keepInView(navLink, document.getElementById('contents'));
  }
  target.scrollIntoView({ block: 'start' });
  // Focus moves with the reader, so Tab continues from the section and screen readers announce it.
  target.querySelector('h2, h3')?.focus({ preventScroll: true });
}

/** Scrolls the contents (its own scroll box on wide screens) so `link` shows; not the page. */
function keepInView(link, box) {
  const linkBox = link.getBoundingClientRect();
  const outer = box.getBoundingClientRect();
  if (linkBox.top < outer.top || linkBox.bottom > outer.bottom) box.scrollTop += linkBox.top - outer.top - outer.height / 3;
}

function setupContentsToggle() {
  const nav = document.getElementById('contents');
  const toggle = document.getElementById('contents-toggle');
  const setOpen = (open) => {
    nav.classList.toggle('is-collapsed', !open);
    toggle.setAttribute('aria-expanded', String(open));
  };
  toggle.addEventListener('click', () => setOpen(nav.classList.contains('is-collapsed')));
  // On a narrow screen the contents sit above the reference: fold them away once a link is chosen.
  nav.addEventListener('click', (event) => {
    if (event.target.closest('a') && getComputedStyle(toggle).display !== 'none') setOpen(false);
  });
}

function setupSearch() {
  const search = document.getElementById('search');
  search.disabled = false;
  search.addEventListener('input', () => applyFilter(search.value));
}

function showLoadError(error) {
  const main = document.getElementById('main');
  const loading = document.getElementById('loading') || main.appendChild(el('p', { id: 'loading' }));
  main.replaceChildren(loading);
  document.getElementById('contents').hidden = true; // empty: nothing to list
  loading.replaceChildren();
  loading.className = 'load-error';
  loading.setAttribute('role', 'alert');
  append(loading, ['The API description could not be loaded from ', el('a', { href: '/openapi.json' }, '/openapi.json'),
    `: ${error.message || error}. Reload the page to try again.`]);
}

async function start() {
  try {
    const response = await fetch('/openapi.json', { headers: { accept: 'application/json' }, cache: 'no-cache' });
    if (!response.ok) throw new Error(`the server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`);
    spec = await response.json();
    if (!spec || typeof spec !== 'object' || Array.isArray(spec)) throw new Error('the answer is not an OpenAPI document');
  } catch (error) {
    showLoadError(error instanceof SyntaxError ? new Error('the answer is not valid JSON') : error);
    return;
  }
  try {
    render();
  } catch (error) {
    showLoadError(new Error(`the page could not render it (${error.message})`));
    reportError(error); // also to the console, for whoever debugs it
    return;
  }
  setupSearch();
  setupContentsToggle();
  window.addEventListener('hashchange', followHash);
  // The sections did not exist when the browser looked for the fragment: look again now.
  if (location.hash) followHash();
}

start();
