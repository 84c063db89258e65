/*
 * POST /v1/heartbeat. Validates the body against the closed schema, checks it against the
 * caller's SigV4 identity, records the agent in the registry (one record per instance) and
 * answers with the instructions of the assessment templates the instance's tags select.
 *
 * Bad input is always a 4xx with a reason; 5xx only when AWS itself fails.
 */
import { EC2Client } from '@aws-sdk/client-ec2';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { clock } from './shared/clock';
import { BackendConfig, loadConfig } from './shared/config';
import { instanceCaller } from './shared/identity';
import { putMetrics } from './shared/emf';
import { confirmOrigin, HeartbeatBody, HeartbeatOrigin, json, parseBody, recordAndAnswer, Rejected } from './shared/heartbeat-core';
import { InstanceTagCache } from './shared/tags';

export type { HeartbeatBody, HeartbeatOrigin };
export { parseBody };
// The identity-document path's function runs this bundle too (`index.identityHandler`): one
// asset for both heartbeat paths, which share most of their code.
export { handler as identityHandler } from './shared/identity-heartbeat-handler';

const ec2 = new EC2Client({});

interface State {
  readonly config: BackendConfig;
  readonly tags: InstanceTagCache;
}
let state: State | undefined;

function init(): State {
  if (!state) {
    const config = loadConfig();
    const keys = [...new Set([config.exclusionTagKey, ...config.templates.flatMap((t) => Object.keys(t.targetTags))])];
    // Without a tag-targeted template, no tag needs reading: exclusion alone only ever removes instructions.
    const watched = config.templates.length > 0 ? keys : [];
    state = { config, tags: new InstanceTagCache(ec2, watched, config.tagCacheSeconds * 1000, () => clock.now()) };
  }
  return state;
}

/** Forgets the configuration and the tag cache (tests change the environment between cases). */
export function resetForTests(): void {
  state = undefined;
}

/**
 * The caller must be an instance role session (which names the account and the instance),
 * and the body must describe that very instance, in that account and in the backend's own
 * Region. The body only ever confirms the origin; a body that disagrees is refused.
 */
export function checkIdentity(
  event: Pick<APIGatewayProxyEvent, 'requestContext'>,
  body: HeartbeatBody,
  backendRegion: string,
): HeartbeatOrigin {
  const caller = instanceCaller(event.requestContext?.identity);
  if ('problem' in caller) throw new Rejected(403, 'NotAnInstance', caller.problem);
  confirmOrigin(body.identityDocument, caller, backendRegion);
  return { ...caller, region: backendRegion };
}

export async function handler(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const { config, tags } = init();
  const now = clock.now();
  const metric = (name: string, extra: Record<string, string> = {}) =>
    putMetrics(config.metricNamespace, { Backend: config.backendName, ...extra }, [{ name, value: 1 }], now);

  let body: HeartbeatBody;
  let origin: HeartbeatOrigin;
  try {
    body = parseBody(event);
    origin = checkIdentity(event, body, config.region);
  } catch (err) {
    if (!(err instanceof Rejected)) throw err;
    metric('HeartbeatsRejected', { Reason: err.reason });
    console.warn(JSON.stringify({
      message: 'heartbeat rejected', status: err.statusCode, reason: err.reason, detail: err.message,
      caller: event.requestContext?.identity?.userArn ?? null, requestId: event.requestContext?.requestId ?? null,
    }));
    return json(err.statusCode, { message: err.message });
  }

  return recordAndAnswer(config, tags, origin, body, now, (name) => metric(name));
}
