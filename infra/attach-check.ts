/**
 * `npm run attach-check -- <env>`: before the first `npm run deploy` of an attach-mode environment, reads the
 * existing hub (`az iot hub show`, the ARM resource as the Azure CLI prints it) and says whether attaching
 * is safe. Terraform cannot: the azurerm_iothub data source exposes the hub's name, host name, identity and
 * tags only (provider v4.55.0 internal/services/iothub/iothub_data_source.go), not its routing, so the
 * identity is also checked at plan time (postcondition in constructs/iot-hub.ts) and everything about
 * routing is checked here:
 *
 * - the system-assigned identity is on (the endpoint authenticates with it);
 * - one more custom endpoint and three more routes stay within the hub's limits: "A maximum of 10 custom
 *   endpoints are allowed across all endpoint types for paid hubs and only 1 ... for free hubs", "A maximum
 *   of 100 routing rules are allowed for paid hubs and a maximum of 5 ... for free hubs" (Microsoft Learn,
 *   @azure/arm-iothub RoutingProperties);
 * - telemetry keeps its way: a hub with no route at all and the fallback route off delivers device messages
 *   to the built-in endpoint only because it has no route; the first route (ours) would end that (Microsoft
 *   Learn, IoT Hub message routing: fallback route). The stack does not manage the fallback route (see
 *   IotHubRouting), so this is refused here with the two ways out, and nothing is changed silently.
 *
 * - `iotHub.sku` / `iotHub.capacity`, when declared, are what the hub is (they set the verify timer's budgets).
 *
 * Our own endpoint and routes (after a deploy) are recognised by name and not counted twice.
 * Exit codes: 0 ready, 1 not ready, 2 bad arguments or the hub could not be read.
 */
import { execFile } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { environments, findEnvironment, isAttached, type AttachIotHubConfig, type EnvironmentConfig } from './config.js';
import { assignSystemIdentityCommand, attachedRoutingNames, ROUTED_SOURCES } from './constructs/iot-hub.js';

export const HUB_ROUTING_LIMITS = {
  paid: { customEndpoints: 10, routes: 100 },
  free: { customEndpoints: 1, routes: 5 },
} as const;
export const ATTACH_ADDS = { customEndpoints: 1, routes: Object.keys(ROUTED_SOURCES).length } as const;

/** A named item in an `az iot hub show` document (a custom endpoint or a route). */
interface HubNamed {
  name?: string | null;
}

/**
 * The parts of an `az iot hub show` document read here. Every field is optional: the document comes from
 * the Azure CLI and is read defensively.
 */
export interface HubShowDocument {
  identity?: { type?: string | null; principalId?: string | null } | null;
  sku?: { name?: string | null; capacity?: number | null } | null;
  properties?: {
    routing?: {
      /** One list per kind of custom endpoint (eventHubs, serviceBusQueues, ...). */
      endpoints?: Record<string, (HubNamed | null)[] | null> | null;
      routes?: (HubNamed | null)[] | null;
      fallbackRoute?: { isEnabled?: boolean | null } | null;
    } | null;
  } | null;
}
type HubRouting = NonNullable<NonNullable<HubShowDocument['properties']>['routing']>;

export interface AttachReadiness {
  readonly ready: boolean;
  readonly problems: string[];
  /** The hub's own custom endpoints and routes (ours excluded), and whether ours are already there. */
  readonly hubEndpoints: number;
  readonly hubRoutes: number;
  readonly attached: { endpoint: boolean; routes: number };
  readonly fallbackEnabled: boolean;
  /** The hub's tier and units as it reports them. */
  readonly tier: { sku: string; units: number };
}

/** Judges an `az iot hub show` document for attaching environment `env`. Pure: tests feed it documents. */
export function attachReadiness(hub: HubShowDocument | null | undefined, env: Pick<EnvironmentConfig, 'name'> & { iotHub: AttachIotHubConfig }): AttachReadiness {
  const problems: string[] = [];
  const ours = attachedRoutingNames(env.name);
  const ourRoutes = new Set(Object.values(ours.routes).map((n) => n.toLowerCase()));
  const routing: HubRouting = hub?.properties?.routing ?? {};

  const identityType = String(hub?.identity?.type ?? 'None');
  if (!/SystemAssigned/i.test(identityType) || !hub?.identity?.principalId) {
    problems.push(`the hub has no system-assigned identity (identity type ${JSON.stringify(identityType)}): ${assignSystemIdentityCommand(env.iotHub)}`);
  }

  // Every list under routing.endpoints is a kind of custom endpoint (Event Hubs, Service Bus queues and
  // topics, storage, Cosmos DB); the built-in `events` endpoint is not among them.
  const endpointNames = Object.values(routing.endpoints ?? {})
    .filter((list): list is (HubNamed | null)[] => Array.isArray(list))
    .flat()
    .map((e) => String(e?.name ?? ''));
  const endpointAttached = endpointNames.some((n) => n.toLowerCase() === ours.endpoint.toLowerCase());
  const hubEndpoints = endpointNames.length - (endpointAttached ? 1 : 0);
  const routes: (HubNamed | null)[] = Array.isArray(routing.routes) ? routing.routes : [];
  const routesAttached = routes.filter((r) => ourRoutes.has(String(r?.name ?? '').toLowerCase())).length;
  const hubRoutes = routes.length - routesAttached;
  const fallbackEnabled = routing.fallbackRoute?.isEnabled === true;

  const tier = { sku: String(hub?.sku?.name ?? ''), units: Number(hub?.sku?.capacity ?? 0) };
  const declared = env.iotHub;
  if (declared.sku !== undefined && (declared.sku !== tier.sku || (declared.capacity ?? 1) !== tier.units)) {
    problems.push(
      `iotHub.sku/capacity say ${declared.sku} × ${declared.capacity ?? 1}, the hub is ${tier.sku} × ${tier.units}: set them to what the hub is (they only size the verify timer's query budget)`,
    );
  }
  const free = /^F/i.test(tier.sku);
  const limits = free ? HUB_ROUTING_LIMITS.free : HUB_ROUTING_LIMITS.paid;
  const tierName = free ? 'free' : 'paid';
  if (hubEndpoints + ATTACH_ADDS.customEndpoints > limits.customEndpoints) {
    problems.push(
      `the hub has ${hubEndpoints} custom endpoints of its own; attaching adds ${ATTACH_ADDS.customEndpoints} and IoT Hub allows at most ${limits.customEndpoints} on ${tierName} tiers: remove an unused endpoint first`,
    );
  }
  if (hubRoutes + ATTACH_ADDS.routes > limits.routes) {
    problems.push(
      `the hub has ${hubRoutes} routes of its own; attaching adds ${ATTACH_ADDS.routes} and IoT Hub allows at most ${limits.routes} on ${tierName} tiers: remove unused routes first`,
    );
  }
  if (hubRoutes === 0 && !fallbackEnabled) {
    problems.push(
      'the hub has no route and its fallback route is off: its device telemetry reaches the built-in endpoint only because no route exists, ' +
        'and the first route (this stack adds three) would stop that. Decide where telemetry goes, then run this check again: ' +
        `keep it on the built-in endpoint with az iot hub message-route fallback set --hub-name ${env.iotHub.name} --resource-group ${env.iotHub.resourceGroupName} --enabled true, ` +
        'or add your own route for DeviceMessages to the endpoint you want',
    );
  }
  return { ready: problems.length === 0, problems, hubEndpoints, hubRoutes, attached: { endpoint: endpointAttached, routes: routesAttached }, fallbackEnabled, tier };
}

export type ShowHub = (hub: AttachIotHubConfig) => Promise<HubShowDocument | null>;

/** `az iot hub show`: the Azure CLI's own sign-in, the hub's subscription when configured. */
export const azShowHub: ShowHub = async (hub) => {
  const args = ['iot', 'hub', 'show', '--name', hub.name, '--resource-group', hub.resourceGroupName, '--output', 'json'];
  if (hub.subscriptionId) args.push('--subscription', hub.subscriptionId);
  const { stdout } = await promisify(execFile)('az', args, { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout) as HubShowDocument | null;
};

export const USAGE = `Usage: npm run attach-check -- <env>

Reads the IoT Hub an attach-mode environment names (az iot hub show) and says whether attaching is safe:
system-assigned identity on, room for 1 custom endpoint and ${ATTACH_ADDS.routes} routes, telemetry's way unchanged.

Arguments:
  <env>   one of: ${environments.filter((e) => isAttached(e.iotHub)).map((e) => e.name).join(', ')}
`;

export async function main(argv: string[], io = { out: console.log, err: console.error }, show: ShowHub = azShowHub): Promise<number> {
  if (argv.length !== 1 || argv[0] === '-h' || argv[0] === '--help') {
    (argv.length === 1 ? io.out : io.err)(USAGE);
    return argv.length === 1 ? 0 : 2;
  }
  let env: EnvironmentConfig;
  try {
    env = findEnvironment(argv[0]);
  } catch (err) {
    io.err((err as Error).message);
    return 2;
  }
  const hubCfg = env.iotHub;
  if (!isAttached(hubCfg)) {
    io.err(`environment ${env.name} creates its own hub (iotHub.mode is not "attach"): nothing to check`);
    return 2;
  }
  let hub: HubShowDocument | null;
  try {
    hub = await show(hubCfg);
  } catch (err) {
    io.err(`could not read IoT Hub ${hubCfg.name} in ${hubCfg.resourceGroupName}: ${(err as Error).message}`);
    return 2;
  }
  const r = attachReadiness(hub, { name: env.name, iotHub: hubCfg });
  io.out(`IoT Hub ${hubCfg.name} (${r.tier.sku} × ${r.tier.units}): ${r.hubEndpoints} custom endpoints and ${r.hubRoutes} routes of its own, fallback route ${r.fallbackEnabled ? 'on' : 'off'}`);
  if (hubCfg.sku === undefined) io.out(`  note: declare iotHub.sku '${r.tier.sku}' and capacity ${r.tier.units} so the verify timer uses this hub's query budget (it assumes S1 × 1)`);
  if (r.attached.endpoint || r.attached.routes > 0) io.out(`  already attached: endpoint ${r.attached.endpoint ? 'yes' : 'no'}, ${r.attached.routes}/${ATTACH_ADDS.routes} routes`);
  for (const p of r.problems) io.out(`  NOT READY: ${p}`);
  io.out(r.ready ? `ready to attach: npm run deploy -- ${env.name}` : 'not ready to attach');
  return r.ready ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
