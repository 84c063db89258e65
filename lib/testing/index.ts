/*
 * Snapshot-test kit for users of cdk-agent-fleet: `import { templateSnapshotSerializer } from 'cdk-agent-fleet/testing'`.
 *
 * Not part of the jsii API (a jest serializer is a JavaScript object of functions): this
 * entry point is for TypeScript and JavaScript test suites.
 */

/**
 * A SHA-256 asset hash, only where CDK puts one: asset object keys (`<hash>.zip`), asset
 * paths (`asset.<hash>`), legacy asset parameters and their descriptions, and container
 * asset image tags. Other 64-hex values (a package checksum baked into a template) are
 * real template content and stay.
 */
const ASSET_HASH = new RegExp([
  '[0-9a-f]{64}(?=\\.(?:zip|json|tar|tgz|jar)\\b)',
  '(?<=asset\\.)[0-9a-f]{64}',
  '(?<=AssetParameters)[0-9a-f]{64}',
  '(?<=asset (?:version )?\\\\?")[0-9a-f]{64}',
  '(?<=container-assets-[^:"]*:)[0-9a-f]{64}',
].join('|'), 'g');
/** The asset bucket of the default (bootstrap) synthesizer, whatever the qualifier. */
const ASSET_BUCKET = /cdk-[a-z0-9]+-assets-(\$\{AWS::AccountId\}|\d{12})-(\$\{AWS::Region\}|[a-z]{2}(-[a-z]+)+-\d)/g;
/** `fn.currentVersion` logical ids end in an MD5 of the function's configuration, code hash included. */
/** Legacy-synthesizer asset parameters end in a hash of their path, which holds the asset hash. */
const LEGACY_PARAMETER = /(AssetParameters<asset hash>(?:S3Bucket|S3VersionKey|ArtifactHash))[0-9A-F]{8}/g;
const VERSION_ID = /(CurrentVersion[0-9A-F]{8})[0-9a-f]{32}/g;

/**
 * A string with asset hashes, asset bucket names and Lambda version ids replaced by
 * stable markers.
 */
export function normaliseAssetReferences(value: string): string {
  return value
    .replace(ASSET_BUCKET, '<asset bucket>')
    .replace(ASSET_HASH, '<asset hash>')
    .replace(LEGACY_PARAMETER, '$1')
    .replace(VERSION_ID, '$1<hash>');
}

function needsNormalising(value: string): boolean {
  return normaliseAssetReferences(value) !== value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null);
}

/* eslint-disable @typescript-eslint/no-explicit-any -- jest's config and refs are opaque here and passed through untouched */
/** Structural subset of jest's `NewPlugin` (so this module needs no jest types). */
export interface SnapshotSerializer {
  test(value: unknown): boolean;
  serialize(value: unknown, config: any, indentation: string, depth: number, refs: any,
    printer: (value: unknown, config: any, indentation: string, depth: number, refs: any) => string): string;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/**
 * Jest snapshot serializer that makes template snapshots independent of how the library
 * (or your own assets) was built: asset hashes, asset bucket names, asset object keys and
 * Lambda version logical ids become stable markers. A snapshot then only changes when the
 * template really does.
 *
 * ```ts
 * import { templateSnapshotSerializer } from 'cdk-agent-fleet/testing';
 * expect.addSnapshotSerializer(templateSnapshotSerializer);
 * expect(Template.fromStack(stack).toJSON()).toMatchSnapshot();
 * ```
 * or in jest.config.js: `snapshotSerializers: ['cdk-agent-fleet/testing']`.
 */
export const templateSnapshotSerializer: SnapshotSerializer = {
  test(value: unknown): boolean {
    if (typeof value === 'string') return needsNormalising(value);
    // Object keys (legacy synthesizer parameters, logical ids) are printed by jest without
    // asking serializers, so objects whose keys need it are rewritten as a whole.
    return isPlainObject(value) && Object.keys(value).some(needsNormalising);
  },
  serialize(value, config, indentation, depth, refs, printer): string {
    if (typeof value === 'string') {
      return printer(normaliseAssetReferences(value), config, indentation, depth, refs);
    }
    // The renamed keys no longer match, so the printer does not come back here for them.
    const renamed = Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [normaliseAssetReferences(k), v]),
    );
    return printer(renamed, config, indentation, depth, refs);
  },
};

// `snapshotSerializers: ['cdk-agent-fleet/testing']` loads the module itself as the serializer.
export const test = templateSnapshotSerializer.test;
export const serialize = templateSnapshotSerializer.serialize;
