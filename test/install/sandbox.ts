/*
 * Runs the rendered Linux install script for real under bash, in a temp dir, with a PATH
 * holding only stand-ins (curl with the instance metadata service behind it, aws, rpm,
 * dpkg, systemctl, uname, ...) and the few real tools the script uses.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { documentParameters } from '../../lib/install/document-parameters';
import { renderLinuxScript } from '../../lib/install/install-scripts';
import { AgentPackage } from '../../lib';

/** Real tools the script may use; anything else must be a stand-in. */
const REAL_TOOLS = ['bash', 'mktemp', 'chmod', 'rm', 'cp', 'mv', 'cat', 'sha256sum', 'install', 'flock', 'sleep', 'mkdir', 'touch', 'grep', 'sed', 'cut', 'tr', 'head', 'basename', 'dirname', 'ls', 'env', 'setsid', 'stat', 'find', 'date'];

const STAND_INS: Record<string, string> = {
  // IMDS at 169.254.169.254 (token, IMDSv1, tags) and https downloads from $SANDBOX/www.
  curl: `
out=""; write=""; method=GET; fail=0; proto=""; url=""; headers=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift ;;
    -w) write="$2"; shift ;;
    -X) method="$2"; shift ;;
    -H) case "$2" in @*) while IFS= read -r h; do headers+=("$h"); done < "\${2#@}" ;; *) headers+=("$2") ;; esac; shift ;;
    --proto) proto="$2"; shift ;;
    --noproxy|--connect-timeout|--max-time|--retry) shift ;;
    -*f*) case "$1" in --*) ;; *) fail=1 ;; esac ;;
    http*) url="$1" ;;
  esac
  shift
done
# Headers given as @file are read from the file, as curl does.
all_headers=()
for h in "\${headers[@]}"; do
  case "$h" in @*) while IFS= read -r line; do all_headers+=("$line"); done < "\${h#@}" ;; *) all_headers+=("$h") ;; esac
done
token_header=""; authorization=""
for h in "\${all_headers[@]}"; do
  case "$h" in X-aws-ec2-metadata-token:*) token_header="\${h#*: }" ;; Authorization:*) authorization="\${h#*: }" ;; esac
done
echo "curl $method $url proto=$proto https_proxy=\${https_proxy:-} no_proxy=\${no_proxy:-}" >> "$SANDBOX/calls.log"
status=404; body=""; body_file=""
case "$url" in
  http://169.254.169.254/*)
    path="\${url#http://169.254.169.254}"
    if [ "$path" = /latest/api/token ]; then
      if [ "$method" = PUT ] && [ -f "$SANDBOX/imds/v2" ]; then status=200; body=TOKEN-1; else status=403; fi
    elif [ -z "$token_header" ] && [ ! -f "$SANDBOX/imds/v1" ]; then status=401
    elif [ -n "$token_header" ] && [ "$token_header" != TOKEN-1 ]; then status=401
    elif [ "$path" = /latest/meta-data/instance-id ]; then status=200; body=i-0123456789abcdef0
    elif [ "$path" = /latest/meta-data/iam/security-credentials/ ]; then
      if [ -f "$SANDBOX/imds/role" ]; then status=200; body="$(cat "$SANDBOX/imds/role")"; fi
    elif [ -f "$SANDBOX/imds/role" ] && [ "$path" = "/latest/meta-data/iam/security-credentials/$(cat "$SANDBOX/imds/role")" ]; then
      status=200; body='{"Code":"Success","AccessKeyId":"ASIASANDBOX","SecretAccessKey":"sandbox-secret","Token":"sandbox-token"}'
    elif [ "$path" = /latest/meta-data/tags/instance ]; then
      if [ -n "$(ls -A "$SANDBOX/imds/tags")" ]; then status=200; body="$(ls "$SANDBOX/imds/tags")"; fi
    else
      key="\${path#/latest/meta-data/tags/instance/}"
      if [ -f "$SANDBOX/imds/tags/$key" ]; then status=200; body="$(cat "$SANDBOX/imds/tags/$key")"; fi
    fi
    ;;
  https://*.s3.*.amazonaws.com/*)
    # Signatures are checked for real in s3-download.test.ts; here only who signed.
    echo "s3 GET $url signed-by=\${authorization#*Credential=}" >> "$SANDBOX/calls.log"
    host="\${url#https://}"; host="\${host%%/*}"; key="\${url#https://$host/}"
    case "$authorization" in "AWS4-HMAC-SHA256 Credential=ASIASANDBOX/"*) ;; *) status=403 ;; esac
    if [ "$status" != 403 ] && [ -f "$SANDBOX/s3/\${host%%.s3.*}/$key" ]; then status=200; body_file="$SANDBOX/s3/\${host%%.s3.*}/$key"; fi
    ;;
  https://*)
    if [ "$proto" != "=https" ]; then echo "curl stand-in: download without --proto =https" >&2; exit 99; fi
    file="$SANDBOX/www/\${url##*/}"
    if [ -f "$file" ]; then status=200; body_file="$file"; fi
    ;;
  *) echo "curl stand-in: unexpected URL $url" >&2; exit 99 ;;
esac
if [ "$fail" = 1 ] && [ "$status" -ge 400 ]; then [ -n "$write" ] && printf '%s' "$status"; exit 22; fi
if [ -n "$body_file" ]; then if [ -n "$out" ]; then cp "$body_file" "$out"; else cat "$body_file"; fi
elif [ -n "$out" ]; then printf '%s' "$body" > "$out"; else printf '%s' "$body"; fi
[ -n "$write" ] && printf '%s' "$status"
exit 0
`,
  // A package file is text: name=<name>, version=<version>, optionally fail=install.
  rpm: `
case "$1" in --eval) case "$2" in *vercmp*) read -ra w <<< "$(printf '%s' "$2" | tr -c 'A-Za-z0-9.~+_:-' ' ')"; [ "\${w[-2]}" = "\${w[-1]}" ] && echo 0 || echo 1 ;; *_dbpath*) echo "$SANDBOX/rpmdb" ;; esac; exit 0 ;; esac
echo "rpm $*" >> "$SANDBOX/calls.log"
field() { grep "^$1=" "$2" | cut -d= -f2; }
case "$1" in
  -q) name="\${!#}"; if [ -f "$SANDBOX/db/$name" ]; then cat "$SANDBOX/db/$name"; else echo "package $name is not installed"; exit 1; fi ;;
  -U) file="\${!#}"; [ "$(field fail "$file")" = install ] && { echo "error: install failed" >&2; exit 1; }
      printf '%s' "$(field version "$file")" > "$SANDBOX/db/$(field name "$file")" ;;
  -e) rm -f "$SANDBOX/db/$2" ;;
  *) exit 99 ;;
esac
`,
  'dpkg-query': `
name="\${!#}"
if [ -f "$SANDBOX/db/$name" ]; then printf 'install ok installed %s' "$(cat "$SANDBOX/db/$name")"; else echo "dpkg-query: no packages found matching $name" >&2; exit 1; fi
`,
  dpkg: `
case "$1" in --compare-versions) case "$3" in eq) [ "$2" = "$4" ] ;; *) [ "$2" != "$4" ] ;; esac; exit ;; esac
echo "dpkg $*" >> "$SANDBOX/calls.log"
field() { grep "^$1=" "$2" | cut -d= -f2; }
case "$1" in
  -i) file="\${!#}"; [ "$(field fail "$file")" = install ] && { echo "dpkg: error processing archive" >&2; exit 1; }
      printf '%s' "$(field version "$file")" > "$SANDBOX/db/$(field name "$file")" ;;
  -r) rm -f "$SANDBOX/db/$2" ;;
  *) exit 99 ;;
esac
`,
  // The service runs unless the installed version is listed in $SANDBOX/broken-versions.
  systemctl: `
echo "systemctl $*" >> "$SANDBOX/calls.log"
case "$1" in
  restart|start)
    version="$(cat "$SANDBOX/db/$2" 2>/dev/null || true)"
    if [ -n "$version" ] && ! grep -qx "$version" "$SANDBOX/broken-versions" 2>/dev/null; then touch "$SANDBOX/services/$2"; else rm -f "$SANDBOX/services/$2"; fi ;;
  stop) rm -f "$SANDBOX/services/$2" ;;
  is-active) [ -f "$SANDBOX/services/\${!#}" ] ;;
  show) if [ -f "$SANDBOX/services/\${!#}" ]; then echo ActiveState=active; else echo ActiveState=inactive; fi; echo NRestarts=0; echo ActiveEnterTimestampMonotonic=1 ;;
  enable|disable) ;;
  *) exit 99 ;;
esac
`,
  uname: '[ "$1" = -m ] && cat "$SANDBOX/machine"',
  'apt-get': 'exit 0',
  dnf: 'exit 0',
};

export interface SandboxOptions {
  /** The host's package manager. */
  readonly format: 'RPM' | 'DEB';
  /** What `uname -m` prints. @default 'x86_64' */
  readonly machine?: string;
  /** Whether the IMDSv2 token request works. @default true */
  readonly imdsV2?: boolean;
  /** Whether the instance still answers IMDSv1. @default false */
  readonly imdsV1?: boolean;
  /** The instance profile role whose credentials the metadata service hands out. @default none */
  readonly instanceProfile?: string;
  /** Instance tags visible in instance metadata. @default {} */
  readonly tags?: Record<string, string>;
  /** Packages installed before the run: name → version. */
  readonly installed?: Record<string, string>;
  /** Service runs unless the installed version is one of these. */
  readonly brokenVersions?: string[];
}

/** The content of a fake package file, which the rpm/dpkg stand-ins understand. */
export function fakePackage(name: string, version: string, options: { failInstall?: boolean } = {}): string {
  return `name=${name}\nversion=${version}\n${options.failInstall ? 'fail=install\n' : ''}`;
}

export function sha256(content: string): string {
  return crypto.createHash('sha256').update(content).digest('hex');
}

/** One run of the script: its JSON result line, output and what it called. */
export interface RunResult {
  readonly status: number | null;
  readonly result: Record<string, string>;
  readonly stdout: string;
  readonly stderr: string;
  readonly calls: string[];
}

/** A run that printed no result line (a signal ended it, or it failed). */
export interface RawRun {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export class Sandbox {
  public readonly dir: string;

  constructor(options: SandboxOptions) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-sandbox-'));
    for (const sub of ['bin', 'imds/tags', 'www', 's3', 'db', 'services', 'state', 'tmp']) {
      fs.mkdirSync(path.join(this.dir, sub), { recursive: true });
    }
    const bin = path.join(this.dir, 'bin');
    for (const tool of REAL_TOOLS) {
      fs.symlinkSync(which(tool), path.join(bin, tool));
    }
    const managers = options.format === 'RPM' ? ['rpm', 'dnf'] : ['dpkg', 'dpkg-query', 'apt-get'];
    for (const name of ['curl', 'systemctl', 'uname', ...managers]) {
      // Package managers and systemctl run with a fresh environment: find the sandbox from the path.
      fs.writeFileSync(path.join(bin, name), `#!${which('bash')}\n: "\${SANDBOX:=$(cd "$(dirname "$0")/.." && pwd)}"\n${STAND_INS[name]}`, { mode: 0o755 });
    }
    fs.writeFileSync(path.join(this.dir, 'machine'), options.machine ?? 'x86_64');
    if (options.imdsV2 ?? true) fs.writeFileSync(path.join(this.dir, 'imds/v2'), '');
    if (options.imdsV1) fs.writeFileSync(path.join(this.dir, 'imds/v1'), '');
    if (options.instanceProfile) fs.writeFileSync(path.join(this.dir, 'imds/role'), options.instanceProfile);
    for (const [key, value] of Object.entries(options.tags ?? {})) {
      fs.writeFileSync(path.join(this.dir, 'imds/tags', key), value);
    }
    for (const [name, version] of Object.entries(options.installed ?? {})) {
      fs.writeFileSync(path.join(this.dir, 'db', name), version);
      fs.writeFileSync(path.join(this.dir, 'services', name), '');
    }
    fs.writeFileSync(path.join(this.dir, 'broken-versions'), (options.brokenVersions ?? []).map((v) => `${v}\n`).join(''));
  }

  /** Serves a file at https://<any host>/<name>. */
  public serve(name: string, content: string): void {
    fs.writeFileSync(path.join(this.dir, 'www', name), content);
  }

  /** Stores an S3 object. */
  public putObject(bucket: string, key: string, content: string): void {
    const file = path.join(this.dir, 's3', bucket, key);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
  }

  public installedVersion(name: string): string | undefined {
    const file = path.join(this.dir, 'db', name);
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
  }

  public serviceActive(name: string): boolean {
    return fs.existsSync(path.join(this.dir, 'services', name));
  }

  public stateFile(service: string, file: string): string {
    return path.join(this.dir, 'state', service, file);
  }

  /** Renders the script for `packages`, substitutes the parameters as SSM would, and runs it. */
  public run(packages: AgentPackage[], parameters: Record<string, string>): RunResult {
    const script = this.writeScript(packages, parameters);
    const run = spawnSync(which('bash'), [script], { env: this.env(), encoding: 'utf8', timeout: 20_000 });
    return this.result(run.status, run.stdout, run.stderr);
  }

  /**
   * Like run, but sends `signal` to the script `afterMs` after it started. Resolves to the run
   * with its result line, or to the raw run when the script printed none.
   */
  public runSignalled(packages: AgentPackage[], parameters: Record<string, string>, signal: NodeJS.Signals, afterMs: number): Promise<RunResult | RawRun> {
    return this.spawnScript(packages, parameters, (child) => {
      const timer = setTimeout(() => child.kill(signal), afterMs);
      return () => clearTimeout(timer);
    });
  }

  /**
   * Like run, but from the moment the script takes signals (its work dir is there) until it
   * ends, sends it SIGTERM as fast as a shell loop can.
   */
  public runStormed(packages: AgentPackage[], parameters: Record<string, string>): Promise<RunResult | RawRun> {
    const work = path.join(this.dir, 'state', 'work');
    return this.spawnScript(packages, parameters, (child) => {
      const storm = spawn(which('bash'), ['-c', `until compgen -G '${work}/run.*' >/dev/null; do :; done; while kill -TERM ${child.pid} 2>/dev/null; do :; done`], { stdio: 'ignore' });
      return () => storm.kill('SIGKILL');
    });
  }

  /** Runs the script; `during` starts what happens to it while it runs and returns how to stop that. */
  private spawnScript(packages: AgentPackage[], parameters: Record<string, string>, during: (child: ChildProcess) => () => void): Promise<RunResult | RawRun> {
    const script = this.writeScript(packages, parameters);
    return new Promise((resolve) => {
      const child = spawn(which('bash'), [script], { env: this.env() });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      const stop = during(child);
      child.on('close', (status, killedBy) => {
        stop();
        try {
          resolve(this.result(status, stdout, stderr));
        } catch {
          resolve({ status, signal: killedBy, stdout, stderr });
        }
      });
    });
  }

  private writeScript(packages: AgentPackage[], parameters: Record<string, string>): string {
    const lines = renderLinuxScript(packages, {
      linuxStateDir: path.join(this.dir, 'state'),
      serviceCheckAttempts: 3,
      serviceCheckIntervalSeconds: 0,
      healthWindowSeconds: 0,
      lockWaitSeconds: 5,
      packageManagerWaitSeconds: 5,
    });
    const script = path.join(this.dir, 'script.sh');
    fs.writeFileSync(script, interpolateParameters(lines, parameters).join('\n') + '\n', { mode: 0o700 });
    fs.writeFileSync(path.join(this.dir, 'calls.log'), '');
    return script;
  }

  private env(): NodeJS.ProcessEnv {
    return { PATH: path.join(this.dir, 'bin'), SANDBOX: this.dir, TMPDIR: path.join(this.dir, 'tmp'), HOME: this.dir };
  }

  private result(status: number | null, stdout: string, stderr: string): RunResult {
    const lastLine = stdout.trim().split('\n').pop() ?? '';
    let result: Record<string, string>;
    try {
      result = JSON.parse(lastLine);
    } catch {
      throw new Error(`no JSON result line; status ${status}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    }
    return {
      status,
      result,
      stdout,
      stderr,
      calls: fs.readFileSync(path.join(this.dir, 'calls.log'), 'utf8').split('\n').filter(Boolean),
    };
  }

  public dispose(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Substitutes `{{ name }}` the way SSM does — after checking each value against the
 * document's allowedValues / allowedPattern, as SSM does before a run starts.
 */
export function interpolateParameters(lines: string[], given: Record<string, string>): string[] {
  // A script with an activation comes from a document whose action may also be Reactivate.
  const parameters = documentParameters('SecurityAgentManaged', lines.some((line) => line.startsWith('ACTIVATION_ID=')));
  const values: Record<string, string> = {};
  for (const [name, parameter] of Object.entries(parameters)) {
    const value = given[name] ?? parameter.default;
    if (parameter.allowedValues && !parameter.allowedValues.includes(value)) {
      throw new Error(`SSM would reject ${name}=${JSON.stringify(value)}: not one of ${parameter.allowedValues.join(', ')}`);
    }
    if (parameter.allowedPattern && !new RegExp(parameter.allowedPattern).test(value)) {
      throw new Error(`SSM would reject ${name}=${JSON.stringify(value)}: does not match ${parameter.allowedPattern}`);
    }
    values[name] = value;
  }
  for (const name of Object.keys(given)) {
    if (!(name in parameters)) throw new Error(`the document has no parameter ${name}`);
  }
  return lines.map((line) => line.replace(/\{\{ *([A-Za-z]+) *\}\}/g, (_, name: string) => values[name]));
}

function which(tool: string): string {
  for (const dir of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const candidate = path.join(dir, tool);
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error(`${tool} not found on this machine`);
}
