// Renders chat templates with @huggingface/jinja, the engine transformers.js applies chat
// templates with (Template(source).render(context); trim_blocks and lstrip_blocks built in).
// Usage: node render_templates.mjs CASES.json RESULTS.json
//   CASES.json: {"templates": {"name": "source", ...}, "cases": [{"template": "name", "context": {...}}]}
//   RESULTS.json: [{"ok": true, "text": "..."} | {"ok": false, "error": "..."}, ...] in case order
// One process renders every case: starting node costs more than all the renders.
import { readFileSync, writeFileSync } from "node:fs";
import { Template } from "@huggingface/jinja";

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const compiled = {};
for (const [name, source] of Object.entries(input.templates)) {
  compiled[name] = new Template(source);
}
const results = input.cases.map(({ template, context }) => {
  try {
    return { ok: true, text: compiled[template].render(context) };
  } catch (e) {
    return { ok: false, error: String(e && e.message ? e.message : e) };
  }
});
writeFileSync(process.argv[3], JSON.stringify(results));
