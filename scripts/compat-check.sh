#!/usr/bin/env bash
# Compatibility run (`npm run test:compat`): installs the packed library with plain
# `npm install` into fresh apps on the OLDEST aws-cdk-lib, constructs and cdk-nag 2 the
# peerDependencies admit (and one app without cdk-nag), then in each app:
#   - type-checks every example against the installed typings (the tsconfig of `cdk init`),
#   - synthesizes every example and every construct, runs the installed cdk-nag packs and
#     fails on any unacknowledged finding on the library's resources, and checks what each
#     fallback of lib/core/cdk-compat.ts promises (test/compat/floor-app.ts),
#   - runs the snapshot serializer's tests against the installed `cdk-agent-fleet/testing`.
# The normal suite covers the pinned (newest) versions.
#
# Set COMPAT_SKIP_BUILD=1 when lib/ and assets/ are already built (CI builds them first),
# COMPAT_KEEP=1 to keep the apps (their cdk.out) for a look afterwards.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

export AWS_REGION="${AWS_REGION:-us-east-1}"
export CDK_DISABLE_CLI_TELEMETRY=1
export JSII_SILENCE_SUPPORT_WARNING=1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true

# The floors are the lowest versions package.json's peer ranges admit (`^2.200.0` -> 2.200.0,
# `>=2.36.0 <4.0.0` -> 2.36.0, a cdk-nag 2).
floor() {
  node -e '
    const range = require("./package.json").peerDependencies[process.argv[1]];
    const lowest = range.trim().split(/\s+/)[0].replace(/^[\^~>=]+/, "");
    if (!/^\d+\.\d+\.\d+$/.test(lowest)) throw new Error(`cannot read a floor from ${process.argv[1]} ${range}`);
    console.log(lowest);' "$1"
}
cdk_floor=$(floor aws-cdk-lib)
constructs_floor=$(floor constructs)
nag2_floor=$(floor cdk-nag)
case $nag2_floor in 2.*) ;; *) echo "compat-check: the cdk-nag floor $nag2_floor is not a cdk-nag 2" >&2; exit 1 ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/cdk-agent-fleet-compat.XXXXXX")
cleanup() { if [ "${COMPAT_KEEP:-}" = 1 ]; then echo "compat-check: kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
trap 'echo "compat-check: failed at line $LINENO" >&2' ERR

step() { printf '\n--- compat: %s\n' "$*"; }

if [ "${COMPAT_SKIP_BUILD:-}" != 1 ]; then
  step "build the library (bundle, jsii)"
  npm run --silent bundle
  npm run --silent compile
fi

step "npm pack"
tarball="$work/$(npm pack --silent --pack-destination "$work" | tail -1)"
ls -l "$tarball"

run_app() {
  local name=$1 nag=$2
  local app="$work/$name"
  mkdir -p "$app"
  step "$name: a new app with aws-cdk-lib $cdk_floor, constructs $constructs_floor, cdk-nag ${nag:-(none)}"
  node -e '
    const [file, tarball, cdk, constructs, nag] = process.argv.slice(1);
    const dependencies = { "aws-cdk-lib": cdk, "constructs": constructs, "cdk-agent-fleet": `file:${tarball}` };
    if (nag) dependencies["cdk-nag"] = nag;
    require("fs").writeFileSync(file, JSON.stringify({ name: "compat-app", version: "0.0.0", private: true, dependencies }, null, 2));
  ' "$app/package.json" "$tarball" "$cdk_floor" "$constructs_floor" "$nag"
  # Plain `npm install`: no --legacy-peer-deps, no --force. An unmet peer fails here.
  (cd "$app" && npm install --no-audit --no-fund --prefer-offline --loglevel=error)
  (cd "$app" && npm ls --depth=1)

  node scripts/compat-bundle.js "$app"

  step "$name: type-check the examples against the installed typings"
  mkdir -p "$app/ts/examples/shared"
  for f in examples/*.ts examples/shared/*.ts; do
    sed -E "s#from '(\.\./)+lib'#from 'cdk-agent-fleet'#" "$f" > "$app/ts/$f"
  done
  # The compiler options `cdk init app --language=typescript` writes.
  cat > "$app/tsconfig.json" <<EOF
{
  "compilerOptions": {
    "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "lib": ["es2022"],
    "strict": true, "noImplicitReturns": true, "experimentalDecorators": true,
    "strictPropertyInitialization": false, "skipLibCheck": true, "noEmit": true, "isolatedModules": true,
    "typeRoots": ["$repo/node_modules/@types"], "types": ["node"]
  },
  "include": ["ts/**/*.ts"]
}
EOF
  (cd "$app" && "$repo/node_modules/.bin/tsc" -p tsconfig.json)
  echo "examples type-check"

  step "$name: synthesize every example and construct, run the cdk-nag packs"
  (cd "$app" && COMPAT_OUTDIR="$app/cdk.out" node test/compat/floor-app.js)

  step "$name: the snapshot serializer's tests on the installed cdk-agent-fleet/testing"
  mkdir -p "$app/test"
  cp test/testing/template-snapshot-serializer.test.ts "$app/test/"
  node -e '
    const [app, repo] = process.argv.slice(1);
    console.log(JSON.stringify({
      rootDir: app, roots: ["<rootDir>/test"], testMatch: ["**/*.test.ts"], testEnvironment: "node",
      transform: { "^.+\\.ts$": [`${repo}/node_modules/@swc/jest`, { jsc: { parser: { syntax: "typescript" }, target: "es2022" }, module: { type: "commonjs" } }] },
      moduleNameMapper: { "^(\\.\\./)+lib/testing$": "cdk-agent-fleet/testing" },
      // jest and pretty-format come from the repository; everything else from the app.
      modulePaths: [`${repo}/node_modules`], setupFiles: [`${repo}/test/setup-env.ts`], cacheDirectory: `${app}/.jest-cache`,
    }));' "$app" "$repo" > "$app/jest.config.json"
  "$repo/node_modules/.bin/jest" --ci --config "$app/jest.config.json" -w 1
}

SECONDS=0
run_app floor-cdk-nag-2 "$nag2_floor"
run_app floor-no-cdk-nag ""
step "passed in ${SECONDS}s"
