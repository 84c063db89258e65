import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';

const EXAMPLES_DIR = path.join(__dirname, '..', '..', 'examples');
const examples = fs.readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.ts')).sort();

describe('examples', () => {
  test('there are examples to synthesize', () => {
    expect(examples.length).toBeGreaterThan(0);
  });

  test.each(examples)('%s synthesizes', (file) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const example = require(path.join(EXAMPLES_DIR, file)) as { build: (app: App) => Stack };
    const app = new App();
    const stack = example.build(app);
    const assembly = app.synth();
    expect(assembly.getStackByName(stack.stackName).template.Resources).toBeDefined();
    expect(Object.keys(Template.fromStack(stack).toJSON().Resources).length).toBeGreaterThan(0);
  });
});
