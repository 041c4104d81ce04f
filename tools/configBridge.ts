// The function app's settings and factories, shared by the tools so both read the same app settings the same way.
import { fromConnectionString } from '../functions/src/adapters/blobDeadLetters';
import { ConfigError, isLoopback } from '../functions/src/config';

export { ConfigError, createCosmosClient, createEngine, isLoopback, readSettings, type SyncSettings } from '../functions/src/config';

export function fromConnectionStringChecked(connectionString: string, container: string) {
  const parsed = fromConnectionString(connectionString, container);
  if (!isLoopback(parsed.containerUrl)) throw new ConfigError('DEADLETTER_CONNECTION_STRING is accepted only for Azurite on loopback');
  return parsed;
}
