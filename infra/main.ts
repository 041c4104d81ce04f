/**
 * `npm run synth` (and cdktf's "app" command): one stack per environment in config.ts.
 * Set TWIN_REPLICA_BACKEND=local to keep state in infra/.state/ instead of Azure.
 */
import { InvalidConfigError } from './config.js';
import { synthesize } from './app.js';

try {
  const started = performance.now();
  const result = await synthesize();
  const ms = Math.round(performance.now() - started);
  const bundle = result.bundleBytes === undefined ? '' : `, functions bundle ${(result.bundleBytes / 1024).toFixed(0)} KiB`;
  console.log(`synthesized ${result.stacks.map((s) => `stacks/${s}`).join(', ')} into ${result.outdir} in ${ms} ms${bundle}`);
} catch (err) {
  if (err instanceof InvalidConfigError) {
    console.error(err.message);
  } else {
    console.error(err instanceof Error ? err.stack ?? err.message : err);
  }
  process.exitCode = 1;
}
