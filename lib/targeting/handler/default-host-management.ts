/*
 * Custom resource: turns on SSM Default Host Management Configuration (DHMC) by pointing the
 * service setting /ssm/managed-instance/default-ec2-instance-management-role at a role, and
 * puts back what was there before when the resource is deleted.
 *
 * The value found before the first change travels in the physical resource id, so delete
 * knows what to restore without any other state. Delete only restores when the setting
 * still names our role: if someone changed it since, their choice stands.
 */
import {
  GetServiceSettingCommand,
  ResetServiceSettingCommand,
  SSMClient,
  UpdateServiceSettingCommand,
} from '@aws-sdk/client-ssm';
import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';

export const SETTING_ID = '/ssm/managed-instance/default-ec2-instance-management-role';
const PHYSICAL_ID_PREFIX = 'default-host-management:';
/** Physical id suffix when the setting had never been changed (restored with a reset). */
const WAS_DEFAULT = 'default';
/** Physical id suffix before a role name that was set when we found it. */
const WAS_ROLE = 'role=';

const ssm = new SSMClient({ maxAttempts: 5 });

interface Outcome {
  readonly status: 'SUCCESS' | 'FAILED';
  readonly physicalResourceId: string;
  readonly reason?: string;
  readonly data?: Record<string, string>;
}

export async function handler(event: CloudFormationCustomResourceEvent, context: Context): Promise<void> {
  const { ResponseURL: _url, ...loggable } = event;
  console.log(JSON.stringify(loggable));
  const outcome = await withDeadline(handle(event), context, event);
  await respond(event, outcome);
}

async function handle(event: CloudFormationCustomResourceEvent): Promise<Outcome> {
  const roleName = String(event.ResourceProperties.RoleName ?? '');
  switch (event.RequestType) {
    case 'Create': {
      if (!/^[\w+=,.@/-]{1,512}$/.test(roleName)) {
        return failed(event, `RoleName must be an IAM role name (with its path, without a leading /), got ${JSON.stringify(roleName)}`);
      }
      const found = await currentSetting();
      const previous = found.isDefault || found.value === roleName ? WAS_DEFAULT : `${WAS_ROLE}${found.value}`;
      await setRole(roleName);
      return { status: 'SUCCESS', physicalResourceId: PHYSICAL_ID_PREFIX + previous, data: { PreviousValue: found.isDefault ? '' : found.value } };
    }
    case 'Update': {
      if (!/^[\w+=,.@/-]{1,512}$/.test(roleName)) {
        return { ...failed(event, `RoleName must be an IAM role name, got ${JSON.stringify(roleName)}`), physicalResourceId: event.PhysicalResourceId };
      }
      await setRole(roleName);
      // Same physical id: what to restore on delete is still what we found at create.
      return { status: 'SUCCESS', physicalResourceId: event.PhysicalResourceId };
    }
    case 'Delete': {
      const physicalResourceId = event.PhysicalResourceId;
      if (!physicalResourceId.startsWith(PHYSICAL_ID_PREFIX)) {
        // A create that failed before changing anything.
        return { status: 'SUCCESS', physicalResourceId };
      }
      const found = await currentSetting();
      if (found.isDefault || found.value !== roleName) {
        console.log(`setting is ${JSON.stringify(found.value)}, not our role ${roleName}: leaving it as it is`);
        return { status: 'SUCCESS', physicalResourceId };
      }
      const previous = physicalResourceId.slice(PHYSICAL_ID_PREFIX.length);
      if (previous.startsWith(WAS_ROLE)) {
        await setRole(previous.slice(WAS_ROLE.length));
      } else {
        await ssm.send(new ResetServiceSettingCommand({ SettingId: SETTING_ID }));
      }
      return { status: 'SUCCESS', physicalResourceId };
    }
  }
}

async function currentSetting(): Promise<{ value: string; isDefault: boolean }> {
  const response = await ssm.send(new GetServiceSettingCommand({ SettingId: SETTING_ID }));
  const setting = response.ServiceSetting;
  return { value: setting?.SettingValue ?? '', isDefault: !setting || setting.Status === 'Default' || !setting.SettingValue || setting.SettingValue === '$None' };
}

async function setRole(roleName: string): Promise<void> {
  await ssm.send(new UpdateServiceSettingCommand({ SettingId: SETTING_ID, SettingValue: roleName }));
}

function failed(event: CloudFormationCustomResourceEvent, reason: string): Outcome {
  // A create that fails leaves an id delete recognises as "nothing to undo".
  const physicalResourceId = event.RequestType === 'Create' ? `failed-create:${event.RequestId}` : event.PhysicalResourceId;
  return { status: 'FAILED', physicalResourceId, reason };
}

/** Reports a failure to CloudFormation before Lambda's own timeout would leave it waiting for an hour. */
async function withDeadline(work: Promise<Outcome>, context: Context, event: CloudFormationCustomResourceEvent): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => resolve(failed(event, 'timed out waiting for SSM')), Math.max(context.getRemainingTimeInMillis() - 5_000, 1_000));
  });
  try {
    return await Promise.race([
      work.catch((err: unknown) => failed(event, `${(err as Error).name ?? 'Error'}: ${(err as Error).message ?? String(err)}`)),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function respond(event: CloudFormationCustomResourceEvent, outcome: Outcome): Promise<void> {
  const body = JSON.stringify({
    Status: outcome.status,
    Reason: (outcome.reason ?? 'OK').slice(0, 1000),
    PhysicalResourceId: outcome.physicalResourceId,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
    Data: outcome.data ?? {},
  });
  console.log(`responding ${outcome.status}: ${outcome.reason ?? 'OK'}`);
  const response = await fetch(event.ResponseURL, {
    method: 'PUT',
    headers: { 'content-type': '', 'content-length': String(Buffer.byteLength(body)) },
    body,
  });
  if (!response.ok) {
    throw new Error(`CloudFormation did not take the response: HTTP ${response.status}`);
  }
}
