// The function app's settings and factories, shared by the tools so both read the same app settings the same way.
export { azureCredential, ConfigError, createCosmosClient, createEngine, isLoopback, readSettings, type SyncSettings } from '../functions/src/config';
