/*
 * The account's IMDS defaults for new instances (ModifyInstanceMetadataDefaults), and how
 * the custom resource remembers what they were so that deleting it restores them.
 *
 * The values from before are kept in the custom resource's physical id: CloudFormation
 * stores it, hands it back on update and delete, and the handler keeps it the same across
 * updates, so no other store is needed.
 */
import type { ImdsPolicy } from './policy';

/**
 * The settings, with `no-preference` (and -1 for the hop limit) where none was set.
 * `HttpTokensEnforced` (account-level IMDSv2 enforcement: launches that do not require
 * IMDSv2 are refused) is absent where it is neither recorded nor to be changed.
 */
export interface AccountDefaults {
  readonly HttpTokens: string;
  readonly HttpPutResponseHopLimit: number;
  readonly HttpEndpoint: string;
  readonly InstanceMetadataTags: string;
  readonly HttpTokensEnforced?: string;
}

export interface AccountDefaultsApi {
  getInstanceMetadataDefaults(): Promise<{
    AccountLevel?: Partial<AccountDefaults> & { ManagedBy?: string; ManagedExceptionMessage?: string };
  }>;
  modifyInstanceMetadataDefaults(input: AccountDefaults): Promise<unknown>;
}

export const PHYSICAL_ID = 'Imdsv2Enforcement';
const BEFORE = '|defaults-before:';

export interface AccountDefaultsReading {
  readonly defaults: AccountDefaults;
  /** An organization's declarative policy owns the defaults: the account cannot change them. */
  readonly managedByPolicy: boolean;
  /** The message the declarative policy gives, if any. */
  readonly managedMessage?: string;
}

/** Reads the account defaults; `managedByPolicy` when an organization's declarative policy owns them. */
export async function readAccountDefaults(api: AccountDefaultsApi): Promise<AccountDefaultsReading> {
  const level = (await api.getInstanceMetadataDefaults()).AccountLevel ?? {};
  return {
    managedByPolicy: level.ManagedBy === 'declarative-policy',
    ...(level.ManagedExceptionMessage ? { managedMessage: level.ManagedExceptionMessage } : {}),
    defaults: {
      HttpTokens: level.HttpTokens ?? 'no-preference',
      HttpPutResponseHopLimit: level.HttpPutResponseHopLimit ?? -1,
      HttpEndpoint: level.HttpEndpoint ?? 'no-preference',
      InstanceMetadataTags: level.InstanceMetadataTags ?? 'no-preference',
      HttpTokensEnforced: level.HttpTokensEnforced ?? 'no-preference',
    },
  };
}

/**
 * The defaults the policy wants for new instances. `enforceHttpTokens` adds account-level
 * IMDSv2 enforcement; without it that setting is not sent, and so stays as it is.
 */
export function defaultsFor(policy: ImdsPolicy, enforceHttpTokens = false): AccountDefaults {
  return {
    HttpTokens: 'required',
    HttpPutResponseHopLimit: policy.hopLimit,
    HttpEndpoint: 'enabled',
    // With the tags setting off the policy leaves it alone, so the account default stays as it is.
    InstanceMetadataTags: policy.instanceMetadataTags ? 'enabled' : 'no-preference',
    ...(enforceHttpTokens ? { HttpTokensEnforced: 'enabled' } : {}),
  };
}

/**
 * What deleting the resource restores: everything as it was, except that HttpTokens never
 * goes back to anything weaker than `required`. Deleting the stack must not let new
 * instances launch with IMDSv1 again. Account-level enforcement (`HttpTokensEnforced`) is
 * only restored where this resource turned it on (`httpTokensEnforcedSet`); an id recorded
 * before that setting existed restores it to `no-preference`.
 */
export function restorableDefaults(before: AccountDefaults, httpTokensEnforcedSet = false): AccountDefaults {
  const { HttpTokensEnforced: enforced, ...rest } = before;
  return {
    ...rest,
    HttpTokens: 'required',
    ...(httpTokensEnforcedSet ? { HttpTokensEnforced: enforced ?? 'no-preference' } : {}),
  };
}

export function physicalIdWith(before: AccountDefaults | undefined): string {
  if (!before) return PHYSICAL_ID;
  return `${PHYSICAL_ID}${BEFORE}HttpTokens=${before.HttpTokens};HttpPutResponseHopLimit=${before.HttpPutResponseHopLimit};`
    + `HttpEndpoint=${before.HttpEndpoint};InstanceMetadataTags=${before.InstanceMetadataTags}`
    + (before.HttpTokensEnforced ? `;HttpTokensEnforced=${before.HttpTokensEnforced}` : '');
}

/** The defaults recorded in a physical id; undefined when it records none (or is not ours). */
export function defaultsInPhysicalId(physicalId: string | undefined): AccountDefaults | undefined {
  const at = physicalId?.indexOf(BEFORE) ?? -1;
  if (!physicalId || !physicalId.startsWith(PHYSICAL_ID) || at < 0) return undefined;
  const fields = Object.fromEntries(physicalId.slice(at + BEFORE.length).split(';').map((kv) => kv.split('=', 2)));
  const hop = Number(fields.HttpPutResponseHopLimit);
  const states = /^(enabled|disabled|optional|required|no-preference)$/;
  if (![fields.HttpTokens, fields.HttpEndpoint, fields.InstanceMetadataTags].every((v) => states.test(v ?? ''))
    || !Number.isInteger(hop)) {
    return undefined;
  }
  if (fields.HttpTokensEnforced !== undefined && !states.test(fields.HttpTokensEnforced)) return undefined;
  return {
    HttpTokens: fields.HttpTokens,
    HttpPutResponseHopLimit: hop,
    HttpEndpoint: fields.HttpEndpoint,
    InstanceMetadataTags: fields.InstanceMetadataTags,
    ...(fields.HttpTokensEnforced ? { HttpTokensEnforced: fields.HttpTokensEnforced } : {}),
  };
}
