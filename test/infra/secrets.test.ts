import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, single, synthFixture, type Synthesized } from './helpers';

let synth: Synthesized;
beforeAll(async () => {
  synth = await synthFixture();
});
afterAll(cleanup);

// Attributes that hold keys, passwords or connection strings in the azurerm schema.
const SECRET_ATTRIBUTE = /\.(primary|secondary)_(access_key|key|connection_string|blob_connection_string|master_key|readonly_key|sql_connection_string)|\.instrumentation_key|\.connection_string|\.(primary|secondary)_shared_access_key|\.site_credential|\.password|\.client_secret/;
const SECRET_LITERAL = /AccountKey=|SharedAccessKey=|SharedAccessKeyName=|InstrumentationKey=|DefaultEndpointsProtocol=|AccountEndpoint=.*;AccountKey/i;

describe.each(['dev', 'prod'])('no secrets in %s', (env) => {
  it('app settings reference no key, password or connection string, and name none', () => {
    const settings: Record<string, string> = single(synth.stacks[env], 'azurerm_function_app_flex_consumption').app_settings;
    for (const [name, value] of Object.entries(settings)) {
      expect(value, name).not.toMatch(SECRET_ATTRIBUTE);
      expect(value, name).not.toMatch(SECRET_LITERAL);
      expect(name).not.toMatch(/KEY$|SECRET|PASSWORD|CONNECTION_?STRING$/i);
    }
    expect(settings).not.toHaveProperty('COSMOS_KEY');
    expect(settings).not.toHaveProperty('WEBSITE_RUN_FROM_PACKAGE');
    // Host storage is identity-based: the plain setting must be absent, not empty (issue 9, finding 1).
    expect(settings).not.toHaveProperty('AzureWebJobsStorage');
  });

  it('outputs reference no key, password or connection string, and none is marked sensitive', () => {
    const outputs = synth.stacks[env].output ?? {};
    expect(Object.keys(outputs).length).toBeGreaterThan(0);
    for (const [name, output] of Object.entries(outputs)) {
      expect(String(output.value), name).not.toMatch(SECRET_ATTRIBUTE);
      expect(output.sensitive, name).toBeUndefined();
    }
  });

  it('the only connection-string reference in the stack is Application Insights in site_config', () => {
    const matches = synth.raw[env].match(/\$\{[^}]*(connection_string|access_key|instrumentation_key|_key)\}/g) ?? [];
    expect(matches).toEqual([expect.stringMatching(/^\$\{azurerm_application_insights\.[^.]+\.connection_string\}$/)]);
    const app = single(synth.stacks[env], 'azurerm_function_app_flex_consumption');
    expect(app.site_config.application_insights_connection_string).toBe(matches[0]);
    expect(single(synth.stacks[env], 'azurerm_application_insights').local_authentication_disabled).toBe(true);
  });

  it('contains no literal key material anywhere', () => {
    expect(synth.raw[env]).not.toMatch(SECRET_LITERAL);
    expect(synth.stacks[env].resource.azurerm_key_vault_secret).toBeUndefined();
    expect(synth.stacks[env].resource.azurerm_eventhub_authorization_rule).toBeUndefined();
    expect(synth.stacks[env].resource.azurerm_eventhub_namespace_authorization_rule).toBeUndefined();
    expect(synth.stacks[env].resource.azurerm_iothub_shared_access_policy).toBeUndefined();
  });
});
