/*
 * Answers a CloudFormation custom resource request by PUTting the response to its
 * pre-signed S3 URL. Used by a handler that CloudFormation invokes directly (no provider
 * framework), which must always answer, success or failure.
 */
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';

export interface CfnOutcome {
  readonly status: 'SUCCESS' | 'FAILED';
  readonly physicalResourceId: string;
  readonly reason?: string;
  readonly data?: Record<string, string>;
}

/** CloudFormation rejects response bodies above 4 KiB; reasons are cut well below that. */
const MAX_REASON = 1500;

export function responseBody(event: CloudFormationCustomResourceEvent, outcome: CfnOutcome): string {
  const reason = outcome.reason ?? '';
  return JSON.stringify({
    Status: outcome.status,
    Reason: reason.length > MAX_REASON ? `${reason.slice(0, MAX_REASON - 3)}...` : reason,
    PhysicalResourceId: outcome.physicalResourceId,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
    NoEcho: false,
    Data: outcome.data ?? {},
  });
}

export type Fetch = (url: string, init: { method: string; headers: Record<string, string>; body: string }) =>
  Promise<{ ok: boolean; status: number }>;

/** Sends the response, retrying a few times: an unanswered request hangs the stack until the service timeout. */
export async function sendResponse(event: CloudFormationCustomResourceEvent, outcome: CfnOutcome, fetchFn: Fetch): Promise<void> {
  const body = responseBody(event, outcome);
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      const response = await fetchFn(event.ResponseURL, {
        method: 'PUT',
        // The pre-signed URL is signed for an empty content type.
        headers: { 'content-type': '', 'content-length': String(Buffer.byteLength(body)) },
        body,
      });
      if (response.ok) return;
      lastError = new Error(`the response URL answered HTTP ${response.status}`);
    } catch (err) {
      lastError = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
  }
  throw lastError;
}
