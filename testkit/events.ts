/**
 * Builders for events exactly as the Event Hubs trigger hands IoT Hub's routed events to a v4 Node
 * function (see the sample events and their provenance in test/fixtures/events/): body,
 * application properties (`propertiesArray[i]`) and system properties (`systemPropertiesArray[i]`,
 * first letter of each key lower-cased by the v4 library).
 */
export interface WireEvent {
  body: unknown;
  properties: Record<string, unknown>;
  systemProperties: Record<string, unknown>;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

export interface Common {
  deviceId: string;
  moduleId?: string;
  /** Operation timestamp (ISO, 7 fractional digits as IoT Hub writes them). */
  ts: string;
  hubName?: string;
}

const SCHEMA: Record<string, string> = {
  twinChangeEvents: 'twinChangeNotification',
  deviceLifecycleEvents: 'deviceLifecycleNotification',
  deviceConnectionStateEvents: 'deviceConnectionStateNotification',
};

function wire(source: string, opType: string, c: Common, body: unknown): WireEvent {
  const properties: Record<string, unknown> = {
    hubName: c.hubName ?? 'local-hub',
    deviceId: c.deviceId,
    operationTimestamp: c.ts,
    'iothub-message-schema': SCHEMA[source],
    opType,
  };
  if (c.moduleId !== undefined) properties.moduleId = c.moduleId;
  const systemProperties: Record<string, unknown> = {
    'iothub-connection-device-id': c.deviceId,
    'iothub-enqueuedtime': c.ts.slice(0, 23) + 'Z',
    'iothub-message-source': source,
    'content-type': 'application/json',
    'content-encoding': 'utf-8',
  };
  if (c.moduleId !== undefined) systemProperties['iothub-connection-module-id'] = c.moduleId;
  return { body, properties, systemProperties };
}

/** Formats a millisecond time as IoT Hub's operationTimestamp (7 fractional digits, `Z`). */
export function opTimestamp(ms: number, extra100ns = 0): string {
  return new Date(ms).toISOString().slice(0, 23) + String(extra100ns).padStart(4, '0') + 'Z';
}

export function twinUpdate(c: Common & { version: number; tags?: Obj | null; desired?: Obj | null; reported?: Obj | null }): WireEvent {
  const body: Obj = { version: c.version };
  if (c.tags !== undefined) body.tags = c.tags;
  if (c.desired !== undefined || c.reported !== undefined) {
    const p: Obj = {};
    if (c.desired !== undefined) p.desired = c.desired;
    if (c.reported !== undefined) p.reported = c.reported;
    body.properties = p;
  }
  if (c.moduleId !== undefined) body.moduleId = c.moduleId;
  return wire('twinChangeEvents', 'updateTwin', c, body);
}

export function fullTwin(c: { deviceId: string; moduleId?: string; version: number; etag?: string; tags?: Obj; desired?: Obj; reported?: Obj; extra?: Obj }): Obj {
  const twin: Obj = { deviceId: c.deviceId };
  if (c.moduleId !== undefined) twin.moduleId = c.moduleId;
  Object.assign(twin, c.extra ?? {});
  twin.etag = c.etag ?? 'AAAAAAAAAAE=';
  twin.version = c.version;
  twin.tags = c.tags ?? {};
  twin.properties = { desired: c.desired ?? { $metadata: { $lastUpdated: '0001-01-01T00:00:00Z' }, $version: 1 }, reported: c.reported ?? { $metadata: { $lastUpdated: '0001-01-01T00:00:00Z' }, $version: 1 } };
  return twin;
}

export function twinReplace(c: Common & { twin: Obj }): WireEvent {
  return wire('twinChangeEvents', 'replaceTwin', c, c.twin);
}

export function created(c: Common & { twin: Obj; moduleSpelling?: 'device' | 'module' }): WireEvent {
  const op = c.moduleId !== undefined && c.moduleSpelling === 'module' ? 'createModuleIdentity' : 'createDeviceIdentity';
  return wire('deviceLifecycleEvents', op, c, c.twin);
}

export function deleted(c: Common & { twin?: Obj; moduleSpelling?: 'device' | 'module' }): WireEvent {
  const op = c.moduleId !== undefined && c.moduleSpelling === 'module' ? 'deleteModuleIdentity' : 'deleteDeviceIdentity';
  return wire('deviceLifecycleEvents', op, c, c.twin ?? { deviceId: c.deviceId, ...(c.moduleId ? { moduleId: c.moduleId } : {}) });
}

/** Connection-state sequence numbers: 64 hex digits, strictly increasing. */
export function connectionSequence(n: number): string {
  return n.toString(16).toUpperCase().padStart(64, '0');
}

export function connection(c: Common & { connected: boolean; sequence: number | string }): WireEvent {
  const seq = typeof c.sequence === 'number' ? connectionSequence(c.sequence) : c.sequence;
  return wire('deviceConnectionStateEvents', c.connected ? 'deviceConnected' : 'deviceDisconnected', c, { sequenceNumber: seq });
}

export function telemetry(deviceId: string, body: unknown = { temperature: 21.5 }): WireEvent {
  return {
    body,
    properties: { alert: 'none' },
    systemProperties: { 'iothub-connection-device-id': deviceId, 'iothub-message-source': 'Telemetry', 'content-type': 'application/json' },
  };
}

/**
 * The library's own conversion of a `dataType: 'string'` body (azure-functions-nodejs-library
 * src/converters/fromRpcTypedData.ts `tryJsonParse`, not exported): JSON when it parses, else the string.
 */
export function tryJsonParse(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

/** An event's body as the Event Hub holds it: UTF-8 text (empty for an absent body). */
export function wireText(body: unknown): string {
  if (body === undefined || body === null) return '';
  return typeof body === 'string' ? body : JSON.stringify(body);
}

export interface TriggerOptions {
  partitionId?: string;
  firstSequence?: number;
  enqueuedMs?: number;
  /**
   * Hand over the raw strings instead of what the worker hands a `dataType: 'string'` function (the
   * library JSON-parses every body it can). @default false
   */
  asStrings?: boolean;
  /**
   * Model a worker that does not ask for IncludeEmptyEntriesInMessagePayload: the host leaves empty bodies
   * out of the message array while the metadata arrays keep every entry. @default false (syncTwins asks for it)
   */
  dropEmptyBodies?: boolean;
}

/**
 * What the trigger passes for one batch from one partition: `messages` (by default as the worker hands
 * them to a `dataType: 'string'` function: a body that parses as JSON arrives parsed, any other as its
 * string, an empty one as '') and `triggerMetadata` with the per-event arrays and the partition context.
 */
export function toTrigger(events: readonly WireEvent[], opts: TriggerOptions = {}) {
  const first = opts.firstSequence ?? 1;
  const base = opts.enqueuedMs ?? Date.parse('2026-01-01T00:00:00Z');
  const systemPropertiesArray = events.map((e, i) => {
    const seq = first + i;
    const enq = new Date(base + i).toISOString();
    return {
      ...e.systemProperties,
      'x-opt-sequence-number': seq,
      'x-opt-offset': String(seq * 512),
      'x-opt-enqueued-time': enq,
      sequenceNumber: seq,
      offset: seq * 512,
      offsetString: String(seq * 512),
      partitionKey: null,
      enqueuedTimeUtc: enq.slice(0, 23),
    };
  });
  const texts = events.map((e) => wireText(e.body)).filter((t) => !(opts.dropEmptyBodies && t === ''));
  return {
    messages: texts.map((t) => (opts.asStrings ? t : tryJsonParse(t))),
    triggerMetadata: {
      propertiesArray: events.map((e) => e.properties),
      systemPropertiesArray,
      sequenceNumberArray: systemPropertiesArray.map((s) => s.sequenceNumber),
      offsetArray: systemPropertiesArray.map((s) => s.offsetString),
      enqueuedTimeUtcArray: systemPropertiesArray.map((s) => s.enqueuedTimeUtc),
      partitionKeyArray: events.map(() => null),
      partitionContext: { consumerGroup: 'sync-twins', eventHubName: 'iothub-events', fullyQualifiedNamespace: 'local', partitionId: opts.partitionId ?? '0' },
    },
  };
}
