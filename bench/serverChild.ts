/** Child-process entry of bench/servers.ts: runs the metered servers and answers over IPC. */
import { startServersInProcess, type ServerOptions } from './servers';

const servers = await startServersInProcess(JSON.parse(process.argv[2] ?? '{}') as ServerOptions);
const { cosmosEndpoint, cosmosKey, database, blobConnectionString, deadLetterContainer } = servers;
process.send!({ ready: { cosmosEndpoint, cosmosKey, database, blobConnectionString, deadLetterContainer } });

async function handle(m: { id: number; op: string; arg?: unknown }): Promise<void> {
  try {
    let result: unknown;
    if (m.op === 'counts') result = await servers.counts();
    else if (m.op === 'createContainer') result = await servers.createContainer(String(m.arg));
    else if (m.op === 'deadLetterBlobs') result = await servers.deadLetterBlobs();
    else if (m.op === 'close') {
      await servers.close();
      process.send!({ id: m.id, result: null });
      process.disconnect();
      return;
    } else throw new Error(`unknown op ${m.op}`);
    process.send!({ id: m.id, result });
  } catch (err) {
    process.send!({ id: m.id, error: (err as Error).stack ?? String(err) });
  }
}
process.on('message', (m: { id: number; op: string; arg?: unknown }) => {
  void handle(m);
});
// The parent going away ends the servers too.
process.on('disconnect', () => process.exit(0));
