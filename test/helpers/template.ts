import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';

/**
 * A stack's template with everything that changes when only the library's build
 * changes (asset hashes, asset bucket and key names) replaced by stable markers.
 */
export function normalizedTemplate(stack: Stack): unknown {
  const json = JSON.stringify(Template.fromStack(stack).toJSON());
  return JSON.parse(json
    .replace(/cdk-[a-z0-9]+-assets-\$\{AWS::AccountId\}-\$\{AWS::Region\}/g, 'ASSET-BUCKET')
    .replace(/[0-9a-f]{64}(\.zip|\.json)?/g, 'ASSET-HASH$1'));
}

/** Resolves a value of a stack (tokens become CloudFormation intrinsics). */
export function resolve(stack: Stack, value: unknown): any {
  return stack.resolve(value);
}
