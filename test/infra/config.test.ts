import { afterAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import path from 'node:path';
import {
  configProblems,
  environments,
  findEnvironment,
  InvalidConfigError,
  tombstoneTtlSeconds,
  validateConfig,
  type EnvironmentConfig,
} from '../../infra/config';
import { namingProblems, NAMING_RULES, resourceNames } from '../../infra/naming';
import { synthesize } from '../../infra/app';
import { cleanup, tempDir } from './helpers';

afterAll(cleanup);

const dev = findEnvironment('dev');
const prod = findEnvironment('prod');
const withOverrides = (base: EnvironmentConfig, patch: Record<string, unknown>): EnvironmentConfig =>
  ({ ...base, ...patch });

describe('configuration validation', () => {
  it('accepts every shipped environment', () => {
    for (const env of environments) expect(configProblems(env)).toEqual([]);
  });

  it.each([
    ['an invalid name prefix', { namePrefix: 'Twin_Rep' }, /namePrefix must be 3\.\.10 lowercase letters\/digits .* got "Twin_Rep"/],
    ['a prefix too long for storage names', { namePrefix: 'abcdefghijk' }, /namePrefix .* got "abcdefghijk"/],
    ['an invalid environment name', { name: 'Dev-1' }, /name must be 2\.\.8 lowercase letters\/digits .* got "Dev-1"/],
    ['retention of 0 days', { eventHubs: { ...dev.eventHubs, retentionDays: 0 } }, /eventHubs\.retentionDays must be an integer from 1 to 7 \(Standard tier\), got 0/],
    ['retention of 8 days', { eventHubs: { ...dev.eventHubs, retentionDays: 8 } }, /eventHubs\.retentionDays must be an integer from 1 to 7 \(Standard tier\), got 8/],
    ['33 partitions', { eventHubs: { ...dev.eventHubs, partitionCount: 33 } }, /eventHubs\.partitionCount must be an integer from 1 to 32/],
    ['an unknown IoT Hub SKU', { iotHub: { ...dev.iotHub, sku: 'F2' } }, /iotHub\.sku must be one of "S1", "S2", "S3", got "F2"/],
    ['an unknown Event Hubs SKU', { eventHubs: { ...dev.eventHubs, sku: 'Basic' } }, /eventHubs\.sku must be one of "Standard", got "Basic"/],
    ['an unknown storage replication', { storage: { ...dev.storage, replication: 'XRS' } }, /storage\.replication must be one of .* got "XRS"/],
    ['an unknown Cosmos throughput mode', { cosmos: { ...dev.cosmos, throughput: { mode: 'provisioned' } } }, /cosmos\.throughput\.mode must be "serverless" or "autoscale", got "provisioned"/],
    ['autoscale below 1000 RU/s', { cosmos: { ...dev.cosmos, throughput: { mode: 'autoscale', maxThroughput: 400 } } }, /maxThroughput must be a multiple of 1000/],
    ['zone redundancy with serverless', { cosmos: { throughput: { mode: 'serverless' }, zoneRedundant: true } }, /zoneRedundant cannot be true for a serverless account/],
    ['a bad alert address', { monitoring: { ...dev.monitoring, alertEmails: ['ops'] } }, /invalid address "ops"/],
    ['a bad NCRONTAB', { functionApp: { ...dev.functionApp, verifySchedule: '30 3 * * *' } }, /six-field NCRONTAB/],
    ['a Flex instance size that does not exist', { functionApp: { ...dev.functionApp, instanceMemoryMb: 1024 } }, /instanceMemoryMb must be one of 512, 2048, 4096, got 1024/],
    ['a location with spaces', { location: 'West Europe' }, /location must be an Azure region name/],
  ])('rejects %s with a message naming the value', (_, patch, message) => {
    const bad = withOverrides(dev, patch);
    expect(() => validateConfig(bad)).toThrow(InvalidConfigError);
    expect(() => validateConfig(bad)).toThrow(message);
  });

  it('enforces the prod rules: 7-day retention, 30-day backup, locks and deny policies, an alert recipient', () => {
    const weak = withOverrides(prod, {
      eventHubs: { ...prod.eventHubs, retentionDays: 1 },
      cosmos: { ...prod.cosmos, backupTier: 'Continuous7Days' },
      protection: { deleteLocks: false, denyLocalAuthPolicies: true },
      monitoring: { ...prod.monitoring, alertEmails: [] },
    });
    const problems = configProblems(weak);
    expect(problems).toEqual([
      'eventHubs.retentionDays must be 7 in prod (the replay window after an outage), got 1',
      'cosmos.backupTier must be "Continuous30Days" in prod (30 days of point-in-time restore), got "Continuous7Days"',
      'protection.deleteLocks and protection.denyLocalAuthPolicies must be true in prod',
      'monitoring.alertEmails must name at least one recipient in prod',
    ]);
  });

  it('lists every problem at once, prefixed with the environment', () => {
    const bad = withOverrides(dev, { namePrefix: 'X', eventHubs: { ...dev.eventHubs, retentionDays: 99 } });
    try {
      validateConfig(bad);
      expect.unreachable('validateConfig accepted a bad configuration');
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidConfigError);
      const e = err as InvalidConfigError;
      expect(e.problems).toHaveLength(2);
      expect(e.message.split('\n')[0]).toBe('Invalid configuration for environment "dev":');
    }
  });

  it('a bad configuration fails synth before anything is written', async () => {
    const outdir = path.join(await tempDir(), 'cdktf.out');
    const bad = withOverrides(dev, { eventHubs: { ...dev.eventHubs, retentionDays: 0 } });
    await expect(
      synthesize({ outdir, environments: [bad, prod], functionsPackageDir: '/nonexistent', backend: 'local' }),
    ).rejects.toThrow(/Invalid configuration for environment "dev":\n {2}- eventHubs\.retentionDays must be an integer from 1 to 7/);
    expect(existsSync(outdir)).toBe(false);
  });

  it('rejects two environments with one name', async () => {
    await expect(synthesize({ environments: [dev, dev], functionsPackageDir: '/nonexistent', backend: 'local' })).rejects.toThrow(
      'Environment "dev" is defined twice',
    );
  });

  it('derives the tombstone TTL from retention: (days + 1) x 86400', () => {
    expect(tombstoneTtlSeconds(dev)).toBe((dev.eventHubs.retentionDays + 1) * 86400);
    expect(tombstoneTtlSeconds(prod)).toBe(8 * 86400);
  });

  it('findEnvironment names the known environments when asked for an unknown one', () => {
    expect(() => findEnvironment('staging')).toThrow('Unknown environment "staging"; known: dev, prod');
  });
});

describe('resource names', () => {
  it.each(environments.map((e) => [e.name, e]))('every %s name follows its Azure naming rule', (_, env) => {
    const names = resourceNames(env);
    expect(namingProblems(names)).toEqual([]);
    expect(Object.keys(names).sort()).toEqual(Object.keys(NAMING_RULES).sort());
  });

  it('are deterministic', () => {
    expect(resourceNames(dev)).toEqual(resourceNames({ ...dev }));
  });

  it('globally unique names differ between environments', () => {
    const a = resourceNames(dev);
    const b = resourceNames(prod);
    for (const key of ['resourceGroup', 'iotHub', 'eventHubNamespace', 'cosmosAccount', 'hostStorage', 'dataStorage', 'functionApp', 'logAnalytics', 'appInsights'] as const) {
      expect(a[key], key).not.toBe(b[key]);
    }
  });

  it('the longest allowed prefix and environment still give valid names', () => {
    expect(namingProblems(resourceNames({ namePrefix: 'abcdefghij', name: 'stage' }))).toEqual([]);
  });

  it('names breaking a rule are reported with the rule', () => {
    const names = { ...resourceNames(dev), hostStorage: 'st-Bad', virtualNetwork: 'vnet-' };
    const problems = namingProblems(names);
    expect(problems).toEqual([
      expect.stringContaining('virtualNetwork name "vnet-" breaks the Azure rule: 2..64 characters'),
      expect.stringContaining('hostStorage name "st-Bad" breaks the Azure rule: 3..24 characters, lowercase letters and digits only'),
    ]);
  });
});
