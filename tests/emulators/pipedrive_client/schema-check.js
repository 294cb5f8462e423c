'use strict';
// Checks JSON answers against the TypeScript types the official `pipedrive` client declares for
// them (generated from Pipedrive's OpenAPI files). The client itself does no runtime checking,
// so this is what "the client parses every response" means here: every key is one the model
// declares, every value has the declared type, every enum value is one of the listed ones.
//
// One relaxation, on purpose: `null` is accepted for any property. The generator drops most
// nullability (e.g. `next_cursor` is typed `string`, yet Pipedrive documents it as null on
// the last page), so refusing null would test the generator, not the emulator.

const path = require('path');
const ts = require('typescript');

const VIRTUAL = path.join(__dirname, '__client_types__.ts');

function loadMethodTypes(methods) {
  // methods: [[namespace, className, methodName], ...] -> Map("ns.Class.method" -> ts.Type)
  const aliases = methods.map(([ns, cls, method], i) =>
    `export type T${i} = Awaited<ReturnType<${ns}.${cls}['${method}']>>;`);
  const source = `import { v1, v2 } from 'pipedrive';\n${aliases.join('\n')}\n`;
  const options = {
    target: ts.ScriptTarget.ES2020,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === VIRTUAL ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === VIRTUAL || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === VIRTUAL ? source : readFile(name));
  const program = ts.createProgram([VIRTUAL], options, host);
  const diagnostics = ts.getPreEmitDiagnostics(program, program.getSourceFile(VIRTUAL));
  if (diagnostics.length) {
    const text = diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    throw new Error(`the client's declarations do not have these methods:\n${text.join('\n')}`);
  }
  const checker = program.getTypeChecker();
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(VIRTUAL));
  const exports = checker.getExportsOfModule(moduleSymbol);
  const types = new Map();
  methods.forEach(([ns, cls, method], i) => {
    const symbol = exports.find((s) => s.name === `T${i}`);
    types.set(`${ns}.${cls}.${method}`, checker.getDeclaredTypeOfSymbol(symbol));
  });
  return { checker, types };
}

function describe(checker, type) {
  return checker.typeToString(type);
}

function check(checker, value, type, where, problems) {
  const F = ts.TypeFlags;
  if (type.flags & (F.Any | F.Unknown)) return;
  if (value === null) return; // see the header
  if (type.flags & F.Union) {
    const members = type.types.filter((t) => !(t.flags & (F.Undefined | F.Null)));
    for (const member of members) {
      const trial = [];
      check(checker, value, member, where, trial);
      if (trial.length === 0) return;
    }
    if (members.length === 1) {
      check(checker, value, members[0], where, problems);
    } else {
      problems.push(`${where}: ${JSON.stringify(value)} is not ${describe(checker, type)}`);
    }
    return;
  }
  if (type.flags & F.StringLiteral || type.flags & F.NumberLiteral) {
    if (value !== type.value) problems.push(`${where}: ${JSON.stringify(value)} is not ${JSON.stringify(type.value)}`);
    return;
  }
  if (type.flags & F.BooleanLiteral) {
    const expected = type === checker.getTrueType();
    if (value !== expected) problems.push(`${where}: ${JSON.stringify(value)} is not ${expected}`);
    return;
  }
  if (type.flags & F.String) {
    if (typeof value !== 'string') problems.push(`${where}: ${JSON.stringify(value)} is not a string`);
    return;
  }
  if (type.flags & F.Number) {
    if (typeof value !== 'number') problems.push(`${where}: ${JSON.stringify(value)} is not a number`);
    return;
  }
  if (type.flags & F.Boolean) {
    if (typeof value !== 'boolean') problems.push(`${where}: ${JSON.stringify(value)} is not a boolean`);
    return;
  }
  if (checker.isArrayType(type)) {
    if (!Array.isArray(value)) {
      problems.push(`${where}: ${JSON.stringify(value)} is not an array`);
      return;
    }
    const [element] = checker.getTypeArguments(type);
    value.forEach((item, i) => check(checker, item, element, `${where}[${i}]`, problems));
    return;
  }
  if (type.flags & F.NonPrimitive) {
    if (typeof value !== 'object' || Array.isArray(value)) problems.push(`${where}: not an object`);
    return;
  }
  if (type.flags & (F.Object | F.Intersection)) {
    if (typeof value !== 'object' || Array.isArray(value)) {
      problems.push(`${where}: ${JSON.stringify(value)} is not an object (${describe(checker, type)})`);
      return;
    }
    const props = new Map(checker.getPropertiesOfType(type).map((p) => [p.name, p]));
    const index = checker.getIndexInfosOfType(type).find((info) => info.keyType.flags & F.String);
    for (const [key, item] of Object.entries(value)) {
      const prop = props.get(key);
      if (prop) {
        check(checker, item, checker.getTypeOfSymbol(prop), `${where}.${key}`, problems);
      } else if (index) {
        check(checker, item, index.type, `${where}.${key}`, problems);
      } else {
        problems.push(`${where}.${key}: not declared by ${describe(checker, type)}`);
      }
    }
    for (const [key, prop] of props) {
      if (!(prop.flags & ts.SymbolFlags.Optional) && !(key in value)) {
        problems.push(`${where}.${key}: required by ${describe(checker, type)} but missing`);
      }
    }
    return;
  }
  problems.push(`${where}: cannot check against ${describe(checker, type)}`);
}

module.exports = { loadMethodTypes, check };
