import { invalidKeyReason } from './ids';
import { isObject } from './merge';
import { normalizeTimestamp } from './timestamps';
import type { DeadLetterReason, DocKey, JsonObject, RawEvent, TwinEvent, TwinSections } from './types';

/** What one incoming event turned out to be. */
export type Classified =
  | { type: 'event'; event: TwinEvent; /** an EventSource, or the source name as sent */ source: string; opType: string }
  | { type: 'skip'; reason: string }
  | { type: 'poison'; reason: DeadLetterReason; detail: string; key?: Partial<DocKey>; opType?: string; source?: string };

export type EventSource = 'twinChangeEvents' | 'deviceLifecycleEvents' | 'deviceConnectionStateEvents';

const SOURCES: Record<string, EventSource> = {
  twinchangeevents: 'twinChangeEvents',
  devicelifecycleevents: 'deviceLifecycleEvents',
  deviceconnectionstateevents: 'deviceConnectionStateEvents',
};

/** opType → the source it belongs to. Module lifecycle has two spellings across doc revisions: accept both. */
const OP_SOURCE: Record<string, EventSource> = {
  updateTwin: 'twinChangeEvents',
  replaceTwin: 'twinChangeEvents',
  createDeviceIdentity: 'deviceLifecycleEvents',
  deleteDeviceIdentity: 'deviceLifecycleEvents',
  createModuleIdentity: 'deviceLifecycleEvents',
  deleteModuleIdentity: 'deviceLifecycleEvents',
  deviceConnected: 'deviceConnectionStateEvents',
  deviceDisconnected: 'deviceConnectionStateEvents',
};

const HEX = /^[0-9A-Fa-f]+$/;

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/**
 * The host hands bodies over as parsed JSON (no dataType), as strings (dataType 'string', what
 * syncTwins registers with so that one non-JSON event cannot fail the whole batch) or as bytes.
 */
export function parseBody(body: unknown): { ok: true; value: JsonObject } | { ok: false; reason: DeadLetterReason; detail: string } {
  let value: unknown = body;
  if (body instanceof Uint8Array) value = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch (err) {
      return { ok: false, reason: 'malformed-body', detail: `body is not JSON: ${(err as Error).message}` };
    }
  }
  if (!isObject(value)) {
    const kind = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
    return { ok: false, reason: 'body-not-object', detail: `body is ${kind}, not a JSON object` };
  }
  return { ok: true, value };
}

function sectionOrPoison(value: unknown, name: string): JsonObject | null | undefined | Error {
  if (value === undefined || value === null || isObject(value)) return value;
  return new Error(`${name} is ${Array.isArray(value) ? 'an array' : typeof value}, not an object`);
}

/** Classifies one event: a change to apply, an event that is not ours, or poison with its reason. */
export function classify(raw: RawEvent): Classified {
  const props = raw.properties ?? {};
  const sys = raw.systemProperties ?? {};
  const sourceProp = str(sys['iothub-message-source']);
  const opType = str(props.opType);
  let source: EventSource | undefined;
  if (sourceProp !== undefined) {
    source = SOURCES[sourceProp.toLowerCase()];
    if (source === undefined) return { type: 'skip', reason: sourceProp };
  } else {
    // Without the source annotation, only an opType we know marks the event as ours; telemetry has neither.
    source = opType !== undefined ? OP_SOURCE[opType] : undefined;
    if (source === undefined) return { type: 'skip', reason: 'no-source' };
  }
  const poison = (reason: DeadLetterReason, detail: string, key?: Partial<DocKey>): Classified => ({
    type: 'poison', reason, detail, key, opType, source,
  });
  if (opType === undefined || OP_SOURCE[opType] !== source) {
    return poison('unknown-op-type', `opType ${JSON.stringify(props.opType ?? null)} is not known for ${source}`);
  }

  const parsed = parseBody(raw.body);
  const deviceId = str(props.deviceId) ?? str(sys['iothub-connection-device-id']) ?? (parsed.ok ? str(parsed.value.deviceId) : undefined);
  const moduleId = str(props.moduleId) ?? str(sys['iothub-connection-module-id']) ?? (parsed.ok && source !== 'deviceConnectionStateEvents' ? str(parsed.value.moduleId) : undefined);
  if (!parsed.ok) return poison(parsed.reason, parsed.detail, { deviceId, moduleId });
  if (deviceId === undefined) return poison('missing-device-id', 'no deviceId in application properties, system properties or body');
  if ((opType === 'createModuleIdentity' || opType === 'deleteModuleIdentity') && moduleId === undefined) {
    return poison('invalid-event', `${opType} without a moduleId`, { deviceId });
  }
  const key: DocKey = moduleId === undefined ? { deviceId } : { deviceId, moduleId };
  const badKey = invalidKeyReason(key);
  if (badKey) return poison('invalid-id', badKey, key);

  const body = parsed.value;
  const opTs = normalizeTimestamp(props.operationTimestamp);
  const ts = opTs ?? normalizeTimestamp(sys['iothub-enqueuedtime']) ?? normalizeTimestamp(sys.enqueuedTimeUtc);
  // The enqueued time is newer on every re-send: it orders, but cannot prove a re-creation (rules.ts).
  const stamp = opTs === undefined && ts !== undefined ? { ts, enqueuedTs: true as const } : { ts };
  const version = body.version;
  const hasVersion = typeof version === 'number' && Number.isSafeInteger(version) && version >= 0;
  const ok = (event: TwinEvent): Classified => ({ type: 'event', event, source: source, opType: opType });

  switch (opType) {
    case 'updateTwin': {
      if (!hasVersion) return poison('invalid-event', 'updateTwin without a numeric twin version', key);
      const properties = sectionOrPoison(body.properties, 'properties');
      if (properties instanceof Error) return poison('invalid-event', properties.message, key);
      const patch: TwinSections = {};
      for (const [name, value] of [['tags', body.tags], ['desired', properties?.desired], ['reported', properties?.reported]] as const) {
        const section = sectionOrPoison(value, name);
        if (section instanceof Error) return poison('invalid-event', section.message, key);
        if (section !== undefined) patch[name] = section;
      }
      return ok({ kind: 'update', key, ...stamp, version, patch });
    }
    case 'replaceTwin':
      if (!hasVersion) return poison('invalid-event', 'replaceTwin without a numeric twin version', key);
      return ok({ kind: 'replace', key, ...stamp, version, twin: body });
    case 'createDeviceIdentity':
    case 'createModuleIdentity':
      if (ts === undefined) return poison('missing-timestamp', `${opType} without operationTimestamp or enqueued time`, key);
      return ok({ kind: 'create', key, ...stamp, version: hasVersion ? version : undefined, twin: body });
    case 'deleteDeviceIdentity':
    case 'deleteModuleIdentity':
      if (ts === undefined) return poison('missing-timestamp', `${opType} without operationTimestamp or enqueued time`, key);
      return ok({ kind: 'delete', key, ...stamp, version: hasVersion ? version : undefined });
    default: {
      const seq = body.sequenceNumber;
      if (typeof seq !== 'string' || !HEX.test(seq)) return poison('invalid-event', `${opType} without a hexadecimal sequenceNumber`, key);
      return ok({ kind: 'connection', key, ...stamp, state: opType === 'deviceConnected' ? 'Connected' : 'Disconnected', sequenceNumber: seq.toUpperCase() });
    }
  }
}

/** The Event Hubs sequence number of an event, from its system properties (either spelling the host uses). */
export function sequenceNumberOf(sys: Record<string, unknown> | undefined): unknown {
  return sys?.sequenceNumber ?? sys?.['x-opt-sequence-number'];
}
