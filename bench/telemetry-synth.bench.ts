/*
 * What a TelemetryStore costs a user's synth: time to build and synthesize an app
 * with N stacks holding one store each, against the same app with one bare s3.Bucket
 * per stack, measured interleaved in the same run.
 */
import { App, Stack } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { TelemetryStore } from '../lib';

function synthMillis(stores: number, withStore: boolean): number {
  const started = process.hrtime.bigint();
  const app = new App();
  for (let i = 0; i < stores; i++) {
    const stack = new Stack(app, `Stack${i}`);
    if (withStore) {
      new TelemetryStore(stack, 'Telemetry');
    } else {
      new s3.Bucket(stack, 'Bucket');
    }
  }
  app.synth();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export async function run(): Promise<void> {
  // Warm up module loading and the JIT on both sides: the first synths are many times slower.
  for (let i = 0; i < 15; i++) {
    synthMillis(2, false);
    synthMillis(2, true);
  }
  const rounds = 15;
  console.log('| stacks | bare s3.Bucket (ms) | TelemetryStore (ms) | ratio |');
  console.log('| --- | --- | --- | --- |');
  for (const n of [1, 10]) {
    const bare: number[] = [];
    const full: number[] = [];
    for (let r = 0; r < rounds; r++) {
      // Interleaved so that machine noise hits both sides alike.
      bare.push(synthMillis(n, false));
      full.push(synthMillis(n, true));
    }
    const e = median(bare);
    const f = median(full);
    console.log(`| ${n} | ${e.toFixed(0)} | ${f.toFixed(0)} | ${(f / e).toFixed(2)} |`);
  }
}
