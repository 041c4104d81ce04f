/**
 * What `npm run local -- --keep` prints so that a user can query the replica it leaves running in IoT Hub's
 * language: a shell command line with the settings the CLI reads and a query on the simulated fleet's tags.
 */
export const EXAMPLE_QUERIES = [
  'SELECT tags.site AS site, COUNT() AS devices FROM devices GROUP BY tags.site',
  "SELECT deviceId, version, connectionState FROM devices WHERE tags.site = 'site-0' AND connectionState = 'Connected'",
  "SELECT deviceId, moduleId FROM devices.modules WHERE is_defined(properties.reported.fw)",
];

export function exampleQueryCommands(settings: { endpoint: string; key: string; database: string; container: string }): string[] {
  const env = `COSMOS_ENDPOINT=${settings.endpoint} COSMOS_KEY=${settings.key} COSMOS_DATABASE=${settings.database} COSMOS_CONTAINER=${settings.container}`;
  // Double quotes around the query: the examples hold single quotes and no characters the shell expands.
  return EXAMPLE_QUERIES.map((q) => `${env} npx twin-replica query "${q}"`);
}
