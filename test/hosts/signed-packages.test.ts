/*
 * Signature-pinned packages on real hosts: real rpm (rpmkeys) and dpkg + gpgv under systemd,
 * packages signed with throwaway vendor keys (gpg, rpmsign). One document (one rendered
 * script) per test: newer signed builds at the same location upgrade without a change to it;
 * tampered, unsigned, wrongly signed or foreign packages install nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Host, outcome, TEST_SETTINGS } from './host';
import { buildDeb, buildRpm, BuiltPackage } from './packages';
import { PACKAGE_HOST } from './roots';
import { AgentPackage, PackageFormat, PackageSigningKey } from '../../lib';
import { renderLinuxScript } from '../../lib/install/install-scripts';
import { TestSigner } from '../helpers/openpgp';

let host: Host | undefined;
let signer: TestSigner;
const VENDOR = 'release@vendor.agent-fleet.test';
const OTHER = 'release@other.agent-fleet.test';

beforeAll(() => {
  signer = new TestSigner(path.join(process.env.HOSTS_RUN_DIR!, 'gnupg'));
  signer.generate(VENDOR);
  signer.generate(OTHER);
});
afterAll(() => signer.dispose());
afterEach(async () => { await host?.dispose(); host = undefined; });

function keyFile(email: string): string {
  const file = path.join(process.env.HOSTS_RUN_DIR!, `${email}.asc`);
  fs.writeFileSync(file, signer.publicKey(email));
  return file;
}

const architecture = process.arch === 'arm64' ? ec2.InstanceArchitecture.ARM_64 : ec2.InstanceArchitecture.X86_64;

/** A copy of a package file with one byte of its payload changed (near the end). */
function tampered(built: BuiltPackage): string {
  const file = `${built.file}.tampered`;
  const data = fs.readFileSync(built.file);
  data[data.length - 20] ^= 0xff;
  fs.writeFileSync(file, data);
  return file;
}

function copy(file: string, to: string): string {
  fs.copyFileSync(file, to);
  return to;
}

describe('signature-pinned RPM, real rpm and systemd', () => {
  test('a newer signed build upgrades with the same document; tampered, unsigned, other-key (even one the host trusts) and foreign packages install nothing; an older build does not downgrade', async () => {
    host = await Host.boot({ format: 'RPM' });
    const agent = AgentPackage.fromUrl(`https://${PACKAGE_HOST}/agent.rpm`, {
      format: PackageFormat.RPM, architecture, serviceName: 'test-agent',
      signingKey: PackageSigningKey.fromFile(keyFile(VENDOR)),
    });
    // One rendering: the document does not change between the runs below.
    const script = renderLinuxScript([agent], TEST_SETTINGS);
    const run = () => host!.runScript([agent], { action: 'Install' }, {}, script);
    const serve = (file: string) => host!.serve('agent.rpm', file);
    const downloads = () => host!.requests().filter((r) => r.kind === 'https').length;

    const v1 = buildRpm({ version: '1.0.0-1' });
    signer.signRpm(v1.file, VENDOR);
    serve(v1.file);
    expect(outcome(await run())).toMatchObject({ outcome: 'installed', version: '1.0.0-1' });
    // Pinned by the key only: every Install looks at what the vendor publishes.
    expect(outcome(await run())).toMatchObject({ outcome: 'already-installed', version: '1.0.0-1' });
    expect(downloads()).toBe(2);

    const v2 = buildRpm({ version: '2.0.0-1' });
    signer.signRpm(v2.file, VENDOR);
    serve(v2.file);
    expect(outcome(await run())).toMatchObject({ outcome: 'upgraded', version: '2.0.0-1' });
    expect(host.unit('test-agent').ActiveState).toBe('active');

    const v3 = buildRpm({ version: '3.0.0-1' });
    const unsigned = copy(v3.file, `${v3.file}.unsigned`);
    signer.signRpm(v3.file, VENDOR);
    serve(tampered(v3));
    let refused = await run();
    expect(outcome(refused)).toMatchObject({ outcome: 'signature-mismatch', version: '2.0.0-1' });
    expect(refused.status).toBe(16);

    serve(unsigned);
    refused = await run();
    expect(outcome(refused)).toMatchObject({ outcome: 'signature-mismatch', version: '2.0.0-1' });
    expect(refused.stderr).toMatch(/does not verify with the pinned key/);

    // Signed by another key that the host's own rpm database trusts: still refused.
    const other = buildRpm({ version: '3.0.0-1' });
    signer.signRpm(other.file, OTHER);
    host.put(keyFile(OTHER), '/root/other.asc');
    host.exec('rpm --import /root/other.asc');
    serve(other.file);
    refused = await run();
    expect(outcome(refused)).toMatchObject({ outcome: 'signature-mismatch', version: '2.0.0-1' });
    expect(refused.status).toBe(16);

    // The vendor's signature on another of its products is not this agent.
    const foreign = buildRpm({ name: 'other-product', version: '9.0.0-1' });
    signer.signRpm(foreign.file, VENDOR);
    serve(foreign.file);
    refused = await run();
    expect(outcome(refused)).toMatchObject({ outcome: 'unexpected-package', version: '2.0.0-1' });
    expect(refused.status).toBe(17);

    // An older signed build (say, a stale mirror) never downgrades the agent.
    serve(v1.file);
    expect(outcome(await run())).toMatchObject({ outcome: 'already-installed', version: '2.0.0-1' });
    expect(host.installedVersion('test-agent')).toBe('2.0.0-1');
  });

  test('a pinned version with a key: only that version, signed, installs', async () => {
    host = await Host.boot({ format: 'RPM' });
    const agent = AgentPackage.fromUrl(`https://${PACKAGE_HOST}/agent.rpm`, {
      format: PackageFormat.RPM, architecture, serviceName: 'test-agent', version: '2.0.0',
      signingKey: PackageSigningKey.fromFile(keyFile(VENDOR)),
    });
    const v3 = buildRpm({ version: '3.0.0-1' });
    signer.signRpm(v3.file, VENDOR);
    host.serve('agent.rpm', v3.file);
    const wrong = await host.runScript([agent]);
    expect(outcome(wrong)).toMatchObject({ outcome: 'unexpected-package', version: '' });
    expect(wrong.stderr).toMatch(/is version 3\.0\.0-1, not the pinned 2\.0\.0/);

    const v2 = buildRpm({ version: '2.0.0-1' });
    signer.signRpm(v2.file, VENDOR);
    host.serve('agent.rpm', v2.file);
    expect(outcome(await host.runScript([agent]))).toMatchObject({ outcome: 'installed', version: '2.0.0-1' });
    expect(outcome(await host.runScript([agent], { action: 'Verify' }))).toMatchObject({ outcome: 'compliant', version: '2.0.0-1' });
  });
});

describe('signature-pinned DEB with a detached signature, real dpkg, gpgv and systemd', () => {
  test('installs, upgrades to a newer signed build with the same document, refuses a tampered package and another key\'s signature', async () => {
    host = await Host.boot({ format: 'DEB' });
    const agent = AgentPackage.fromUrl(`https://${PACKAGE_HOST}/agent.deb`, {
      format: PackageFormat.DEB, architecture, serviceName: 'test-agent',
      signingKey: PackageSigningKey.fromFile(keyFile(VENDOR)),
      detachedSignature: `https://${PACKAGE_HOST}/agent.deb.asc`,
    });
    const script = renderLinuxScript([agent], TEST_SETTINGS);
    const run = () => host!.runScript([agent], { action: 'Install' }, {}, script);
    const publish = (file: string, signedBy: string, signed = file) => {
      const signature = `${file}.asc`;
      signer.detachSign(signed, signedBy, signature);
      host!.serve('agent.deb', file);
      host!.serve('agent.deb.asc', signature);
    };

    const v1 = buildDeb({ version: '1.0.0-1' });
    publish(v1.file, VENDOR);
    expect(outcome(await run())).toMatchObject({ outcome: 'installed', version: '1.0.0-1' });
    expect(outcome(await run())).toMatchObject({ outcome: 'already-installed', version: '1.0.0-1' });

    const v2 = buildDeb({ version: '2.0.0-1' });
    publish(v2.file, VENDOR);
    expect(outcome(await run())).toMatchObject({ outcome: 'upgraded', version: '2.0.0-1' });
    expect(host.unit('test-agent').ActiveState).toBe('active');

    // The vendor's signature of v3, served with a changed v3.
    const v3 = buildDeb({ version: '3.0.0-1' });
    publish(tampered(v3), VENDOR, v3.file);
    let refused = await run();
    expect(outcome(refused)).toMatchObject({ outcome: 'signature-mismatch', version: '2.0.0-1' });
    expect(refused.status).toBe(16);

    // A package signed with another key, whatever apt's key rings trust.
    publish(v3.file, OTHER);
    refused = await run();
    expect(outcome(refused)).toMatchObject({ outcome: 'signature-mismatch', version: '2.0.0-1' });
    expect(refused.stderr).toMatch(/does not verify with the pinned key/);

    // No signature published at all.
    fs.rmSync(path.join(host.share, 'www', 'agent.deb.asc'));
    refused = await run();
    expect(outcome(refused)).toMatchObject({ outcome: 'download-failed', version: '2.0.0-1' });
    expect(host.installedVersion('test-agent')).toBe('2.0.0-1');
  });
});
