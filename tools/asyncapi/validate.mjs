// Validates an AsyncAPI document with the official parser: the spec's JSON Schema
// plus its semantic rules. Prints the diagnostics as JSON; exits 1 on any error.
import { Parser, fromFile } from '@asyncapi/parser';

const path = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, path).parse();
const report = diagnostics.map((d) => ({
  severity: ['error', 'warning', 'info', 'hint'][d.severity],
  code: d.code,
  message: d.message,
  path: d.path.join('.'),
}));
console.log(JSON.stringify({ version: document?.version() ?? null, diagnostics: report }, null, 2));
process.exit(document && !report.some((d) => d.severity === 'error') ? 0 : 1);
