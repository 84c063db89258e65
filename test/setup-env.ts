import * as v8 from 'node:v8';

// Keep the SDK and tools off the network: no region probing of the instance metadata service.
process.env.AWS_REGION ??= 'us-east-1';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
process.env.CDK_DISABLE_CLI_TELEMETRY = '1';

// aws-cdk-lib's built-in CloudFormation validation compiles a large WebAssembly module, and
// node finishes V8's background optimisation of it before a process exits: a jest worker took
// about 0.9 s to exit, past jest's grace, and every run ended with "A worker process has failed
// to exit gracefully". Baseline (Liftoff) code only: the worker exits at once, synth is no slower.
v8.setFlagsFromString('--liftoff-only');
