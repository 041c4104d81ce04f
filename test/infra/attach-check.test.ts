import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { findEnvironment, type AttachIotHubConfig } from '../../infra/config';
import { ATTACH_ADDS, attachReadiness, HUB_ROUTING_LIMITS, main } from '../../infra/attach-check';
import { attachedRoutingNames, ROUTED_SOURCES } from '../../infra/constructs/iot-hub';

/**
 * attach-check judges `az iot hub show` documents. The documents here are shaped as the Azure CLI prints
 * the Microsoft.Devices/IotHubs resource (camelCase keys: identity.type/principalId, sku.name,
 * properties.routing.endpoints.{eventHubs,serviceBusQueues,serviceBusTopics,storageContainers,
 * cosmosDbSqlContainers}, routing.routes, routing.fallbackRoute.isEnabled); no hub is reachable here.
 */
const existing = findEnvironment('existing');
const env = { name: existing.name, iotHub: existing.iotHub as AttachIotHubConfig };
const ours = attachedRoutingNames(existing.name);

function hubDoc(o: { identity?: string; principal?: string; sku?: string; endpoints?: string[]; routes?: string[]; fallback?: boolean } = {}) {
  const endpoints = o.endpoints ?? [];
  return {
    name: env.iotHub.name,
    sku: { name: o.sku ?? 'S2', capacity: o.sku ? 1 : 2 },
    identity: { type: o.identity ?? 'SystemAssigned', principalId: o.principal ?? (o.identity === 'None' ? null : '11111111-2222-3333-4444-555555555555') },
    properties: {
      routing: {
        endpoints: {
          eventHubs: endpoints.filter((_, i) => i % 3 === 0).map((name) => ({ name })),
          serviceBusQueues: endpoints.filter((_, i) => i % 3 === 1).map((name) => ({ name })),
          storageContainers: endpoints.filter((_, i) => i % 3 === 2).map((name) => ({ name })),
          serviceBusTopics: [],
          cosmosDbSqlContainers: [],
        },
        routes: (o.routes ?? []).map((name) => ({ name, source: 'DeviceMessages', endpointNames: ['events'], isEnabled: true, condition: 'true' })),
        fallbackRoute: { name: '$fallback', source: 'DeviceMessages', endpointNames: ['events'], isEnabled: o.fallback ?? true, condition: 'true' },
      },
    },
  };
}
const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe('attachReadiness', () => {
  it('a hub with its system identity, room to spare and the fallback route on is ready', () => {
    expect(attachReadiness(hubDoc({ endpoints: ['archive'], routes: ['to-archive'] }), env)).toEqual({
      ready: true, problems: [], hubEndpoints: 1, hubRoutes: 1, attached: { endpoint: false, routes: 0 }, fallbackEnabled: true, tier: { sku: 'S2', units: 2 },
    });
  });

  it.each(['None', 'UserAssigned'])('identity %s: not ready, and says the one command that fixes it', (identity) => {
    const r = attachReadiness(hubDoc({ identity, principal: '' }), env);
    expect(r.ready).toBe(false);
    expect(r.problems).toEqual([
      `the hub has no system-assigned identity (identity type "${identity}"): az iot hub identity assign --name ${env.iotHub.name} --resource-group ${env.iotHub.resourceGroupName} --subscription ${env.iotHub.subscriptionId} --system-assigned`,
    ]);
  });

  it('"SystemAssigned, UserAssigned" is ready', () => {
    expect(attachReadiness(hubDoc({ identity: 'SystemAssigned, UserAssigned' }), env).ready).toBe(true);
  });

  it('no route and the fallback route off: refuses, because the first route would stop telemetry reaching the built-in endpoint', () => {
    const r = attachReadiness(hubDoc({ fallback: false }), env);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatch(/^the hub has no route and its fallback route is off/);
    expect(r.problems[0]).toContain(`az iot hub message-route fallback set --hub-name ${env.iotHub.name} --resource-group ${env.iotHub.resourceGroupName} --enabled true`);
    // With a route of its own, telemetry already follows the hub's routes: our three (never DeviceMessages) change nothing.
    expect(attachReadiness(hubDoc({ fallback: false, routes: ['telemetry-to-storage'] }), env).ready).toBe(true);
    expect(attachReadiness(hubDoc({ fallback: true }), env).ready).toBe(true);
  });

  it('refuses a declared tier that is not the hub (it sizes the verify budget); says what to declare when none is', async () => {
    expect(attachReadiness(hubDoc({ sku: 'S1' }), env).problems).toEqual([
      "iotHub.sku/capacity say S2 × 2, the hub is S1 × 1: set them to what the hub is (they only size the verify timer's query budget)",
    ]);
    const undeclared = { name: 'samesub', iotHub: { mode: 'attach' as const, name: 'iot-fleet-2', resourceGroupName: 'rg-fleet' } };
    expect(attachReadiness(hubDoc({ sku: 'S3' }), undeclared).ready).toBe(true);
  });

  it('counts every kind of custom endpoint and every route against the limits of the tier, ours not twice', () => {
    const attached = { endpoints: ['archive', ours.endpoint], routes: ['to-archive', ...Object.values(ours.routes)] };
    const r = attachReadiness(hubDoc(attached), env);
    expect(r).toMatchObject({ ready: true, hubEndpoints: 1, hubRoutes: 1, attached: { endpoint: true, routes: Object.keys(ROUTED_SOURCES).length } });
    const anyTier = { ...env, iotHub: { ...env.iotHub, sku: undefined, capacity: undefined } };
    expect(attachReadiness(hubDoc({ sku: 'F1', endpoints: ['one'] }), anyTier).problems).toEqual([
      'the hub has 1 custom endpoints of its own; attaching adds 1 and IoT Hub allows at most 1 on free tiers: remove an unused endpoint first',
    ]);
    expect(attachReadiness(hubDoc({ sku: 'F1', routes: names('r', 3) }), anyTier).problems).toEqual([
      'the hub has 3 routes of its own; attaching adds 3 and IoT Hub allows at most 5 on free tiers: remove unused routes first',
    ]);
  });

  it('property: ready exactly when identity, endpoint room, route room and telemetry all hold (paid tier)', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 102 }), fc.boolean(), fc.boolean(), (system, e, rts, fallback, alreadyOurs) => {
        const endpoints = [...names('ep', e), ...(alreadyOurs ? [ours.endpoint] : [])];
        const routes = [...names('route', rts), ...(alreadyOurs ? Object.values(ours.routes) : [])];
        const r = attachReadiness(hubDoc({ identity: system ? 'SystemAssigned' : 'None', endpoints, routes, fallback }), env);
        const expected =
          system &&
          e + ATTACH_ADDS.customEndpoints <= HUB_ROUTING_LIMITS.paid.customEndpoints &&
          rts + ATTACH_ADDS.routes <= HUB_ROUTING_LIMITS.paid.routes &&
          (rts > 0 || fallback);
        expect(r.ready).toBe(expected);
        expect(r.hubEndpoints).toBe(e);
        expect(r.hubRoutes).toBe(rts);
      }),
    );
  });
});

describe('npm run attach-check', () => {
  const capture = () => {
    const lines: string[] = [];
    return { lines, io: { out: (l: string) => lines.push(l), err: (l: string) => lines.push(`ERR ${l}`) } };
  };

  it('prints the hub counts and exits 0 when ready, 1 with each problem when not', async () => {
    const ok = capture();
    expect(await main(['existing'], ok.io, async () => hubDoc({ routes: ['a'] }))).toBe(0);
    expect(ok.lines.join('\n')).toMatch(/\(S2 × 2\): 0 custom endpoints and 1 routes of its own, fallback route on\nready to attach: npm run deploy -- existing/);
    const bad = capture();
    expect(await main(['existing'], bad.io, async () => hubDoc({ fallback: false }))).toBe(1);
    expect(bad.lines.join('\n')).toMatch(/NOT READY: the hub has no route[\s\S]*not ready to attach$/);
  });

  it('asks the Azure CLI for the configured hub, and exits 2 when it cannot read it or the environment creates its own hub', async () => {
    const seen: AttachIotHubConfig[] = [];
    const failing = capture();
    expect(await main(['existing'], failing.io, async (h) => { seen.push(h); throw new Error('ResourceNotFound'); })).toBe(2);
    expect(seen).toEqual([env.iotHub]);
    expect(failing.lines[0]).toBe(`ERR could not read IoT Hub ${env.iotHub.name} in ${env.iotHub.resourceGroupName}: ResourceNotFound`);
    const dev = capture();
    expect(await main(['dev'], dev.io, async () => ({}))).toBe(2);
    expect(dev.lines[0]).toMatch(/creates its own hub/);
    expect(await main([], capture().io)).toBe(2);
  });
});
