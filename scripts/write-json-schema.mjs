// Writes config/sheaf.schema.json from the zod schema in dist/ (run `npm run schema`).
import { writeFileSync } from 'node:fs';
import { sheafJsonSchema } from '../dist/config/json-schema.js';

const target = new URL('../config/sheaf.schema.json', import.meta.url);
writeFileSync(target, `${JSON.stringify(sheafJsonSchema(), null, 2)}\n`);
console.log(`wrote ${target.pathname}`);
