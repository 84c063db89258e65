/*
 * The Windows install script cannot run here (no PowerShell on these machines): these tests
 * read the rendered script the way a reviewer would, with a small PowerShell reader, and pin
 * each fix of issue 9 to the code that makes it. What they cannot show is listed in the README.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { checkBrackets, finishCalls, functions, topLevel } from './powershell';
import { AgentPackage, PackageFormat } from '../../lib';
import { renderWindowsScript } from '../../lib/install/install-scripts';

const msi = AgentPackage.fromUrl('https://downloads.example.com/agent-1.2.3.msi', {
  format: PackageFormat.MSI, architecture: ec2.InstanceArchitecture.X86_64,
  sha256: 'a'.repeat(64), version: '1.2.3', serviceName: 'agent', packageName: 'Security Agent',
});
// One from S3 too, so the script carries the S3 signer (only then does it: the document has 64 KB).
const fromS3 = AgentPackage.fromBucket(s3.Bucket.fromBucketName(new Stack(), 'B', 'agent-packages'), 'agent-arm64.msi', {
  format: PackageFormat.MSI, architecture: ec2.InstanceArchitecture.ARM_64,
  sha256: 'b'.repeat(64), version: '1.2.3', serviceName: 'agent', packageName: 'Security Agent',
});
const script = renderWindowsScript([msi, fromS3]).join('\n');
const fns = functions(script);
const top = topLevel(script);

function body(name: string): string {
  const text = fns.get(name);
  if (text === undefined) throw new Error(`the script has no function ${name}`);
  return text;
}

/** Statements of a function body, one per line, trimmed, without blank lines. */
function statements(name: string): string[] {
  return body(name).split('\n').map((l) => l.trim()).filter(Boolean);
}

// Cmdlets of Windows PowerShell 5.1 the script may call; anything else Verb-Noun must be its own.
const CMDLETS = new Set(['Set-StrictMode', 'Get-AuthenticodeSignature', 'Write-Output', 'ConvertTo-Json', 'ConvertFrom-Json', 'Test-Path', 'Remove-Item', 'Get-ItemProperty',
  'Where-Object', 'Select-Object', 'Start-Process', 'Get-Content', 'Copy-Item', 'Move-Item', 'Set-Content', 'Get-Service', 'Set-Service',
  'Restart-Service', 'Stop-Service', 'Start-Sleep', 'Get-Date', 'Invoke-WebRequest', 'Get-FileHash', 'New-Item', 'New-Object', 'Set-Acl',
  'ForEach-Object', 'Join-Path']);

describe('the Windows install script, read as a reviewer would (PowerShell cannot run here)', () => {
  test('parses: brackets balance, every function it calls exists, every setting it reads is in the header', () => {
    expect(() => checkBrackets(script)).not.toThrow();
    const code = [...fns.values(), top].join('\n').replace(/'[^'\n]*'|"[^"\n]*"/g, "''");
    const called = new Set([...code.matchAll(/(?<![\w$.:-])([A-Z][a-z]+-[A-Z][A-Za-z0-9]+)\b/g)].map((m) => m[1]));
    expect([...called].filter((name) => !CMDLETS.has(name) && !fns.has(name))).toEqual([]);
    const header = script.slice(0, script.indexOf('# --- end of settings ---'));
    const settings = new Set([...header.matchAll(/^\$(Agent[A-Za-z0-9]+) = /gm)].map((m) => m[1]));
    const read = new Set([...code.matchAll(/\$\{?(Agent[A-Za-z0-9]+)\b/g)].map((m) => m[1]));
    expect([...read].filter((name) => !settings.has(name))).toEqual([]);
  });

  test('without an S3 package there is no S3 signer, and only an s3:// source reaches Get-S3Object', () => {
    const httpsOnly = renderWindowsScript([msi]).join('\n');
    expect(httpsOnly).not.toMatch(/^function (Get-S3Object|Get-HmacSha256|Get-SharedCredentials)/m);
    expect(body('Get-Package')).toMatch(/if \(\$source\.StartsWith\('s3:\/\/'\)\) \{\s+Get-S3Object/);
  });

  test('one run at a time: a named system mutex taken before anything is read or changed, held until the result line', () => {
    // GIVEN the run lock
    const lock = body('Enter-RunLock');
    expect(lock).toMatch(/\[System\.Threading\.Mutex\]::new\(\$false, \$name\)/);
    expect(lock).toMatch(/\$name = 'Global\\cdk-agent-fleet-' \+/); // a kernel object: nothing Uninstall can delete
    expect(lock).toMatch(/\$mutex\.WaitOne\(\[TimeSpan\]::FromSeconds\(\$AgentLockWaitSeconds\)\)/);
    expect(finishCalls(lock)).toEqual([['busy', 14], ['busy', 14]]);
    expect(lock).toMatch(/AbandonedMutexException/); // a run that died does not block the next one

    // WHEN Main runs, THEN the lock comes before the installed product is read and before every action
    const main = statements('Main');
    const lockAt = main.findIndex((s) => s.startsWith('Enter-RunLock $package.Service'));
    expect(lockAt).toBeGreaterThan(0);
    for (const action of ['Get-InstalledProduct', 'Invoke-Install', 'Uninstall-Product', 'New-PrivateDirectory (Join-Path (Join-Path $env:ProgramData']) {
      const at = main.findIndex((s, i) => i > 0 && s.includes(action));
      expect({ action, after: at > lockAt }).toEqual({ action, after: true });
    }
    // and Finish releases it only after printing the result line, right before exit
    const finish = statements('Finish');
    expect(finish.slice(-3)).toEqual([
      'Write-Output ($result | ConvertTo-Json -Compress)',
      'if ($Script:RunLock) { $Script:RunLock.ReleaseMutex(); $Script:RunLock.Dispose() }',
      'exit $ExitCode',
    ]);
  });

  test('msiexec exit codes: 3010 and 1641 are successes that need a restart, 1618 is a busy installer, the rest fail', () => {
    const table = Object.fromEntries([...body('Get-MsiexecResult').matchAll(/^\s*(\d+|default) \{ return '([a-z-]+)' \}/gm)].map((m) => [m[1], m[2]]));
    expect(table).toEqual({ 0: 'success', 3010: 'reboot-required', 1641: 'reboot-initiated', 1618: 'busy', default: 'failed' });
    // No other place reads msiexec's exit code.
    const readers = [...fns].filter(([, text]) => text.includes('.ExitCode')).map(([name]) => name);
    expect(readers).toEqual(['Invoke-Msiexec']);
    // 1618 is waited on, bounded, and retried.
    const run = statements('Invoke-Msiexec');
    expect(run).toContain("if ($result -ne 'busy' -or (Get-Date) -ge $deadline) { break }");
    expect(run).toContain('Start-Sleep -Seconds $AgentPackageManagerRetrySeconds');
  });

  test('a busy installer ends package-manager-busy, never a rollback; a restart is asked of SSM with exit 3010', () => {
    for (const name of ['Install-Pinned', 'Repair-Agent', 'Main']) {
      const lines = statements(name);
      const busy = lines.filter((s) => s.includes("-eq 'busy'"));
      expect({ name, busy }).toEqual({ name, busy: [expect.stringMatching(/^if \(\$result -eq 'busy'\) \{ (Remove-Pending; )?Finish 'package-manager-busy' 15 \}$/)] });
      // it is handled before any rollback can see the result
      const rollbackAt = lines.findIndex((s) => s.includes('Invoke-Rollback'));
      if (rollbackAt >= 0) expect(lines.indexOf(busy[0])).toBeLessThan(rollbackAt);
      const reboot = lines.find((s) => s.startsWith("if ($result -like 'reboot-*')"));
      expect({ name, reboot }).toEqual({ name, reboot: expect.stringMatching(/^if \(\$result -like 'reboot-\*'\) \{( Finish 'reboot-required' 3010 \}|)$/) });
    }
    // Install keeps the package for the run after the restart, which checks the service before it
    // records the version as good.
    const install = body('Install-Pinned');
    expect(install).toMatch(/Copy-Item -LiteralPath \$File -Destination \(Get-StatePath 'pending\.msi'\) -Force\s+Finish 'reboot-required' 3010/);
    const after = statements('Invoke-Install');
    const check = after.indexOf('if (Test-ServiceUp $Package.Service) {');
    expect(check).toBeGreaterThan(0);
    expect(after.slice(check + 1, check + 4)).toEqual(["Save-LastGood (Get-StatePath 'pending.msi') $Package", 'Remove-Pending', 'Finish $pending.outcome 0']);
  });

  test('the same outcomes and exit statuses as the Linux script, plus reboot-required = 3010 (SSM Agent\'s RebootExitCode on Windows)', () => {
    const linux = ['install-agent.sh', 'package-signature.sh']
      .map((file) => fs.readFileSync(path.join(__dirname, '../../lib/install/scripts', file), 'utf8')).join('\n');
    const linuxCodes = new Map<string, Set<number>>();
    for (const [, word, code] of linux.matchAll(/\bfinish ([a-z-]+) (\d+)/g)) linuxCodes.set(word, new Set([...(linuxCodes.get(word) ?? []), Number(code)]));
    // A successful Install ends through finish_installed (activation.sh), with status 0.
    for (const [, word] of linux.matchAll(/\bfinish_installed ([a-z-]+)/g)) linuxCodes.set(word, new Set([...(linuxCodes.get(word) ?? []), 0]));
    expect(linuxCodes.size).toBeGreaterThan(10);
    const windows = finishCalls(script);
    for (const [word, code] of windows) {
      if (word === 'reboot-required') {
        expect(code).toBe(3010);
        continue;
      }
      expect({ word, known: linuxCodes.has(word) || ['rollback-impossible', 'repaired', 'repair-failed', 'package-manager-busy'].includes(word) })
        .toEqual({ word, known: true });
      const codes = linuxCodes.get(word);
      if (!codes) continue;
      // Exact where the Linux script gives the word a status of its own; success and failure agree always.
      const exact = [...codes].some((c) => c !== 0 && c !== 1);
      if (exact) expect({ word, code, linux: codes.has(code) }).toEqual({ word, code, linux: true });
      else expect({ word, code, agrees: [...codes].some((c) => (c === 0) === (code === 0)) }).toEqual({ word, code, agrees: true });
    }
    expect(windows.map(([word]) => word)).toEqual(expect.arrayContaining(['busy', 'package-manager-busy', 'reboot-required', 'repaired', 'repair-failed']));
  });

  test('a failed msiexec prints the end of its log, and keeps a copy, before the work directory is deleted', () => {
    const run = body('Invoke-Msiexec');
    expect(run).toMatch(/\$logFile = Join-Path \$Script:WorkDir "msiexec-\$Name\.log"/);
    expect(run).toMatch(/'\/l\*v', "`"\$logFile`""/);
    expect(run).toMatch(/if \(\$result -eq 'failed'\) \{\s+Write-Log "msiexec exited with \$\(\$process\.ExitCode\)"\s+Write-MsiexecLogTail \$logFile\s+\}/);
    const tail = body('Write-MsiexecLogTail');
    expect(tail).toMatch(/Get-Content -LiteralPath \$LogFile -Tail 40 \| ForEach-Object \{ Write-Log " {2}\$_" \}/);
    expect(tail).toMatch(/Copy-Item -LiteralPath \$LogFile -Destination \(Join-Path \$Script:StateDir 'last-failed-msiexec\.log'\)/);
    // Every msiexec run goes through Invoke-Msiexec, so every failure gets its log printed.
    const direct = [...fns].filter(([name, text]) => name !== 'Invoke-Msiexec' && /msiexec\.exe/.test(text)).map(([name]) => name);
    expect(direct).toEqual([]);
  });

  test('S3 packages: signed in-process, through proxyUrl, with Default Host Management or instance profile credentials', () => {
    const download = body('Get-S3Object');
    expect(download).toMatch(/if \(\$AgentProxyUrl\) \{ \$request\.Proxy = New-Object System\.Net\.WebProxy\(\$AgentProxyUrl\) \}/);
    expect(download).toMatch(/\$credentials = Get-SharedCredentials\s+if \(-not \$credentials\) \{ \$credentials = Get-InstanceProfileCredentials \}/);
    expect(body('Get-SharedCredentials')).toMatch(/\$file = \$env:AWS_SHARED_CREDENTIALS_FILE/);
    expect(body('Get-InstanceProfileCredentials')).toMatch(/Get-ImdsPath "\/latest\/meta-data\/iam\/security-credentials\/\$role"/);
    // Neither the AWS CLI nor AWS Tools for PowerShell, and no child process that could see a secret.
    expect(script).not.toMatch(/Read-S3Object|aws s3 cp|& aws\b/);
    expect(body('Get-Package')).toMatch(/Get-S3Object \$source \$Package\.Region \$File/);
  });

  test('already-installed only after the service was seen running; otherwise it is repaired', () => {
    const [owner, ...others] = [...fns].filter(([, text]) => text.includes("Finish 'already-installed'")).map(([name]) => name);
    expect([owner, others]).toEqual(['Repair-Agent', []]);
    expect(statements('Repair-Agent')[0]).toBe("if (Test-ServiceUp $Package.Service) { Finish 'already-installed' 0 }");
    expect(statements('Invoke-Install')).toContain('if (-not $pending) { Repair-Agent $Package }');
  });

  test('a product without DisplayVersion does not trip StrictMode: it is read through PSObject.Properties', () => {
    expect(script).not.toMatch(/\.DisplayVersion\b/);
    expect(body('Get-InstalledProduct')).toMatch(/\$version = \$product\.PSObject\.Properties\['DisplayVersion'\]/);
    expect(body('Get-InstalledProduct')).toMatch(/Version = if \(\$version\) \{ \[string\] \$version\.Value \} else \{ '' \}/);
  });

  test('TLS 1.2 is added to the protocols in force, not set in their place (TLS 1.3 stays on)', () => {
    const assignments = [...script.matchAll(/^\s*(\[Net\.ServicePointManager\]::SecurityProtocol\s*=.*)$/gm)].map((m) => m[1]);
    expect(assignments).toEqual(['[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12']);
    expect(top.indexOf('SecurityProtocol')).toBeLessThan(top.indexOf('Main'));
  });
});

describe('the PowerShell reader these tests use', () => {
  test('finds unbalanced brackets, but not inside strings or comments', () => {
    expect(() => checkBrackets("if ($a) { Write-Log 'a }' # }\n}")).not.toThrow();
    expect(() => checkBrackets('function A { if ($b) { return "$($c.D)" }')).toThrow(/unclosed '\{' at line 1/);
    expect(() => checkBrackets('$x = @(1, 2]')).toThrow(/unbalanced '\]'/);
    expect(() => checkBrackets("$s = 'it''s fine'; $t = \"a `\" b\"")).not.toThrow();
  });

  test('splits functions, bodies without their comments', () => {
    const parsed = functions("function A([int] $x) {\n  # } not the end\n  if ($x) { 'b' }\n}\nfunction B { Finish 'busy' 14 }\nMain");
    expect([...parsed.keys()]).toEqual(['A', 'B']);
    expect(parsed.get('A')).not.toContain('not the end');
    expect(finishCalls(parsed.get('B')!)).toEqual([['busy', 14]]);
  });
});
