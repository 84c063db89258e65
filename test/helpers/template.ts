import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { normaliseAssetReferences } from '../../lib/testing';

/**
 * A stack's template with everything that changes when only the library's build
 * changes (asset hashes, asset bucket and key names, Lambda version ids) replaced by
 * stable markers — the same normalisation users get from `cdk-agent-fleet/testing`.
 */
export function normalizedTemplate(stack: Stack): unknown {
  return JSON.parse(normaliseAssetReferences(JSON.stringify(Template.fromStack(stack).toJSON())));
}
