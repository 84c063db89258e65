import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { interpolateParameters } from './sandbox';
import { AgentInstallDocument, AgentPackage, AgentPackageOptions, PackageFormat, PackageSigningKey, SigningKeyType } from '../../lib';
import { renderLinuxScript, renderWindowsScript } from '../../lib/install/install-scripts';
import { TestSigner } from '../helpers/openpgp';

const ENV = { account: '111122223333', region: 'eu-west-1' };
const VENDOR = 'release@vendor.example';
const THUMBPRINT = 'A1'.repeat(20);

let signer: TestSigner;
let fingerprint: string;
let dir: string;
beforeAll(() => {
  signer = new TestSigner();
  fingerprint = signer.generate(VENDOR);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'issue10-packages-keys-'));
  fs.writeFileSync(path.join(dir, 'vendor.asc'), `Comment: from the vendor's page\n${signer.publicKey(VENDOR)}`);
  fs.writeFileSync(path.join(dir, 'private.asc'), signer.privateKey(VENDOR));
});
afterAll(() => {
  signer.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

const key = () => PackageSigningKey.fromFile(path.join(dir, 'vendor.asc'));
const publisher = () => PackageSigningKey.authenticodePublisher({ thumbprint: THUMBPRINT, subject: 'CN=Example Corp, O=Example Corp, C=US' });

function pkg(overrides: Partial<AgentPackageOptions> = {}, url = 'https://downloads.example.com/agent.rpm'): AgentPackage {
  return AgentPackage.fromUrl(url, { format: PackageFormat.RPM, architecture: ec2.InstanceArchitecture.X86_64, serviceName: 'agent', signingKey: key(), ...overrides });
}

function documentError(packages: AgentPackage[]): string {
  const stack = new Stack(new App(), 'Stack', { env: ENV });
  try {
    new AgentInstallDocument(stack, 'Install', { packages });
  } catch (error) {
    return (error as Error).message;
  }
  return 'no error';
}

describe('PackageSigningKey', () => {
  test('reads an armored public key at synth, with its fingerprint, and re-armors it without comments', () => {
    // WHEN
    const k = key();

    // THEN
    expect(k.keyType).toBe(SigningKeyType.OPENPGP);
    expect(k.problems).toEqual([]);
    expect(k.fingerprint).toBe(fingerprint);
    expect(k.armoredKey).toMatch(/^-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n[A-Za-z0-9+/=\n]+\n=[A-Za-z0-9+/]{4}\n-----END PGP PUBLIC KEY BLOCK-----$/);
    expect(k.armoredKey).not.toMatch(/Comment/);
    // gpg reads the re-armored key back as the same key.
    const check = spawnSync('gpg', ['--batch', '--with-colons', '--show-keys'], { input: k.armoredKey, encoding: 'utf8', env: { ...process.env, GNUPGHOME: signer.home } });
    expect(check.stdout).toContain(`fpr:::::::::${fingerprint}:`);
  });

  test('accepts the expected fingerprint, spaced as vendors print it', () => {
    const spaced = fingerprint.match(/.{4}/g)!.join(' ');
    expect(PackageSigningKey.fromFile(path.join(dir, 'vendor.asc'), { fingerprint: spaced.toLowerCase() }).problems).toEqual([]);
  });

  test('fails when the key file holds a private key, loudly, without echoing it', () => {
    const message = documentError([pkg({ signingKey: PackageSigningKey.fromFile(path.join(dir, 'private.asc')) })]);
    expect(message).toMatch(/packages\[0\]\.signingKey: .*PRIVATE key block: a private key must never go into a template or document/);
    expect(message).not.toMatch(/BEGIN PGP/);
  });

  test('fails when the secret key material comes without the PRIVATE armor label', () => {
    const relabelled = signer.privateKey(VENDOR).replace(/PRIVATE KEY BLOCK/g, 'PUBLIC KEY BLOCK');
    expect(PackageSigningKey.fromArmoredKey(relabelled).problems.join()).toMatch(/secret key material/);
  });

  test.each([
    ['a binary key', 'binary', /not an ASCII-armored OpenPGP public key/],
    ['a damaged armor', 'damaged', /checksum does not match/],
    ['a signature instead of a key', 'signature', /exactly one PGP PUBLIC KEY BLOCK, found PGP SIGNATURE/],
  ])('fails when the file is %s', (_name, kind, expected) => {
    const armored = signer.publicKey(VENDOR);
    const text = kind === 'binary' ? 'mQENBGsPPSoBCADX' : kind === 'damaged'
      ? armored.replace(/\n([A-Za-z0-9+/]{10})/, (_m, s: string) => `\n${s.split('').reverse().join('')}`)
      : '-----BEGIN PGP SIGNATURE-----\n\niQ==\n-----END PGP SIGNATURE-----\n';
    expect(PackageSigningKey.fromArmoredKey(text).problems.join()).toMatch(expected);
  });

  test('fails when the fingerprint is not the expected one', () => {
    const message = documentError([pkg({ signingKey: PackageSigningKey.fromFile(path.join(dir, 'vendor.asc'), { fingerprint: '0'.repeat(40) }) })]);
    expect(message).toContain(`the key's fingerprint is ${fingerprint}, not the expected ${'0'.repeat(40)}`);
  });

  test('fails when the key file cannot be read, naming it', () => {
    expect(() => PackageSigningKey.fromFile(path.join(dir, 'missing.asc'))).toThrow(/PackageSigningKey\.fromFile: cannot read ".*missing\.asc"/);
  });

  test.each([
    [{}, /give a thumbprint, a subject or both/],
    [{ thumbprint: 'abc' }, /not 40 hexadecimal characters/],
    [{ subject: "CN='quoted'" }, /must be a distinguished name/],
  ])('authenticodePublisher(%j) fails', (options, expected) => {
    expect(PackageSigningKey.authenticodePublisher(options).problems.join()).toMatch(expected);
  });
});

describe('signature-pinned packages in AgentInstallDocument', () => {
  test.each<[string, () => AgentPackage, RegExp]>([
    ['neither a hash nor a key pins the package', () => pkg({ signingKey: undefined, version: '1.0.0' }), /packages\[0\]\.sha256: got ""; allowed: .*required unless a signingKey pins the package/],
    ['an OpenPGP key pins an MSI', () => pkg({ format: PackageFormat.MSI, version: '1.0.0' }, 'https://downloads.example.com/agent.msi'), /packages\[0\]\.signingKey: got "OPENPGP key on MSI"; allowed: a MSI package is verified with PackageSigningKey\.authenticodePublisher/],
    ['a publisher pins an RPM', () => pkg({ signingKey: publisher() }), /packages\[0\]\.signingKey: got "AUTHENTICODE key on RPM"; allowed: a RPM package is verified with PackageSigningKey\.fromFile/],
    ['a signed DEB says nowhere where its signature is', () => pkg({ format: PackageFormat.DEB }, 'https://downloads.example.com/agent.deb'), /packages\[0\]\.detachedSignature: got undefined; allowed: where the detached signature of the \.deb is/],
    ['an RPM has a detached signature', () => pkg({ detachedSignature: 'https://downloads.example.com/agent.rpm.asc' }), /packages\[0\]\.detachedSignature: .*only for DEB packages/],
    ['a detached signature comes without a key', () => pkg({ format: PackageFormat.DEB, signingKey: undefined, sha256: 'a'.repeat(64), version: '1', detachedSignature: 'https://x.example/a.asc' }), /detachedSignature: .*only with a signingKey/],
    ['a DEB signature is plain http', () => pkg({ format: PackageFormat.DEB, detachedSignature: 'http://downloads.example.com/agent.deb.asc' }, 'https://downloads.example.com/agent.deb'), /detachedSignature: got "http:/],
    ['an MSI pinned by its publisher has no version', () => pkg({ format: PackageFormat.MSI, signingKey: publisher(), packageName: 'Agent' }, 'https://downloads.example.com/agent.msi'), /packages\[0\]\.version: got undefined; allowed: .*only an RPM or DEB package pinned by a signingKey may leave it out/],
    ['a package with neither key nor version', () => pkg({ signingKey: undefined, sha256: 'a'.repeat(64) }), /packages\[0\]\.version: got undefined/],
  ])('fails when %s', (_name, make, expected) => {
    expect(documentError([make()])).toMatch(expected);
  });

  test('renders each key once, the detached signature in the same bucket, and grants reading it', () => {
    // GIVEN
    const stack = new Stack(new App(), 'Stack', { env: ENV });
    const bucket = new s3.Bucket(stack, 'Packages', { enforceSSL: true });
    const rpmPackage = pkg();
    const debPackage = AgentPackage.fromBucket(bucket, 'agent/agent.deb', {
      format: PackageFormat.DEB, architecture: ec2.InstanceArchitecture.X86_64, serviceName: 'agent', signingKey: key(), detachedSignature: 'agent/agent.deb.sig',
    });
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });

    // WHEN
    const document = new AgentInstallDocument(stack, 'Install', { packages: [rpmPackage, debPackage] });
    document.grantPackageRead(role);

    // THEN
    const script = interpolateParameters(renderLinuxScript([rpmPackage, debPackage]), {}).join('\n');
    expect(script.match(/BEGIN PGP PUBLIC KEY BLOCK/g)).toHaveLength(1);
    expect(script).toContain("PKG_RPM_X86_64_SIGNING_KEY='AGENT_SIGNING_KEY_1'");
    expect(script).toContain("PKG_DEB_X86_64_SIGNING_KEY='AGENT_SIGNING_KEY_1'");
    expect(script).toContain("PKG_RPM_X86_64_SHA256=''");
    expect(script).toContain("PKG_RPM_X86_64_VERSION=''");
    expect(script).not.toContain('PKG_RPM_X86_64_SIGNATURE');
    const content = Object.values<any>(Template.fromStack(stack).findResources('AWS::SSM::Document'))[0].Properties.Content;
    expect(content.description).toContain('(signed) from pinned, SHA-256- or signature-verified packages');
    const lines: unknown[] = content.mainSteps[0].inputs.runCommand;
    expect(lines).toContainEqual({ 'Fn::Join': ['', ["  PKG_DEB_X86_64_SIGNATURE='s3://", { Ref: expect.stringMatching(/^Packages/) }, "/agent/agent.deb.sig'"]] });
    const policy = Object.values<any>(Template.fromStack(stack).findResources('AWS::IAM::Policy'))[0].Properties.PolicyDocument;
    expect(policy.Statement).toEqual([{ Action: 's3:GetObject', Effect: 'Allow', Resource: [
      { 'Fn::Join': ['', [{ 'Fn::GetAtt': [expect.stringMatching(/^Packages/), 'Arn'] }, '/agent/agent.deb']] },
      { 'Fn::Join': ['', [{ 'Fn::GetAtt': [expect.stringMatching(/^Packages/), 'Arn'] }, '/agent/agent.deb.sig']] },
    ] }]);
    // Documents without a signed package do not carry the signature functions.
    expect(renderLinuxScript([pkg({ signingKey: undefined, sha256: 'a'.repeat(64), version: '1' })]).join('\n')).not.toContain('verify_package_signature()');
    expect(script).toContain('verify_package_signature()');
  });

  test('an MSI pinned by its Authenticode publisher renders the signer in the Windows header, and the script checks it (reviewed, not run: no PowerShell here)', () => {
    const msi = AgentPackage.fromUrl('https://downloads.example.com/agent.msi', {
      format: PackageFormat.MSI, architecture: ec2.InstanceArchitecture.X86_64, serviceName: 'agent', packageName: 'Agent', version: '1.0.0', signingKey: publisher(),
    });
    expect(documentError([msi])).toBe('no error');
    const script = renderWindowsScript([msi]).join('\n');
    expect(script).toContain(`Sha256 = ''; Version = '1.0.0'; Name = 'Agent'; Service = 'agent'; SignerThumbprint = '${THUMBPRINT}'; SignerSubject = 'CN=Example Corp, O=Example Corp, C=US' }`);
    expect(script).toMatch(/if \(\$Package\.ContainsKey\('SignerThumbprint'\)\) \{ Assert-Publisher \$Package \$file \}/);
    expect(script).toMatch(/\$signature = Get-AuthenticodeSignature -LiteralPath \$File/);
    expect(script).toMatch(/\$signature\.Status -ne \[System\.Management\.Automation\.SignatureStatus\]::Valid/);
    expect(script).toMatch(/\$signer\.Thumbprint -ne \$Package\.SignerThumbprint/);
    expect(script).toMatch(/\$signer\.Subject -cne \$Package\.SignerSubject/);
    expect(script).toMatch(/Finish 'signature-mismatch' 16/);
    // An unsigned-pin MSI renders as before: no signer fields.
    const hashed = AgentPackage.fromUrl('https://downloads.example.com/agent.msi', {
      format: PackageFormat.MSI, architecture: ec2.InstanceArchitecture.X86_64, serviceName: 'agent', packageName: 'Agent', version: '1.0.0', sha256: 'a'.repeat(64),
    });
    expect(renderWindowsScript([hashed]).join('\n')).not.toContain('SignerThumbprint =');
  });

  test('the rendered script with signed packages passes shellcheck', () => {
    const file = path.join(dir, 'signed.sh');
    const deb = pkg({ format: PackageFormat.DEB, detachedSignature: 'https://downloads.example.com/agent.deb.asc' }, 'https://downloads.example.com/agent.deb');
    fs.writeFileSync(file, interpolateParameters(renderLinuxScript([pkg(), deb]), {}).join('\n') + '\n');
    const run = spawnSync('shellcheck', [file], { encoding: 'utf8' });
    expect(run.stdout).toBe('');
    expect(run.status).toBe(0);
  });

  test('a document with five signed packages and a 4096-bit vendor key stays far below SSM\'s 64 KB', () => {
    // GIVEN: a key the size vendors use, with two signed RPM and DEB builds and a signed MSI.
    const big = new TestSigner();
    try {
      spawnSync('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', 'Big vendor <big@vendor.example>', 'rsa4096', 'sign', 'never'],
        { env: { ...process.env, GNUPGHOME: big.home } });
      const bigKey = PackageSigningKey.fromArmoredKey(big.publicKey('big@vendor.example'));
      const packages = (['RPM', 'DEB'] as const).flatMap((format) => [ec2.InstanceArchitecture.X86_64, ec2.InstanceArchitecture.ARM_64].map((architecture) =>
        AgentPackage.fromUrl(`https://downloads.example.com/agent-${architecture}.${format.toLowerCase()}`, {
          format: PackageFormat[format], architecture, serviceName: 'agent', signingKey: bigKey,
          detachedSignature: format === 'DEB' ? `https://downloads.example.com/agent-${architecture}.deb.asc` : undefined,
        })));
      packages.push(AgentPackage.fromUrl('https://downloads.example.com/agent.msi', {
        format: PackageFormat.MSI, architecture: ec2.InstanceArchitecture.X86_64, serviceName: 'agent', packageName: 'Agent', version: '1.0.0', signingKey: publisher(),
      }));
      const stack = new Stack(new App(), 'Stack', { env: ENV });

      // WHEN
      new AgentInstallDocument(stack, 'Install', { packages });

      // THEN
      const content = Object.values<any>(Template.fromStack(stack).findResources('AWS::SSM::Document'))[0].Properties.Content;
      const size = Buffer.byteLength(JSON.stringify(content));
      const keySize = Buffer.byteLength(bigKey.armoredKey!);
      process.stdout.write(`document with 5 signed packages: ${size} bytes (key ${keySize} bytes, once), limit 65536\n`);
      expect(keySize).toBeGreaterThan(1000);
      expect(size).toBeLessThan(64 * 1024);
    } finally {
      big.dispose();
    }
  });
});
