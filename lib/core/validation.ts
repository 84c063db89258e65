import { Duration, Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';

/**
 * One problem with one prop: which prop, the value that was given, and what is allowed.
 */
export interface PropProblem {
  /** The prop's path, e.g. `retention` or `packages[2].sha256`. */
  readonly prop: string;
  /** The value as it was given, rendered for humans. */
  readonly value: string;
  /** What the prop accepts. */
  readonly allowed: string;
}

/**
 * The error every construct of this library throws for bad props.
 *
 * It lists every problem found in one go, so a user fixes all of them in one round.
 * Internal: jsii cannot export a subclass of `Error`; callers recognise it with
 * `AgentFleetErrors.isValidationError()` or by its `name`.
 */
export class AgentFleetValidationError extends Error {
  public readonly problems: PropProblem[];

  /**
   * @param scope the construct whose props are wrong, or a description of what took them
   *   when that is not a construct (e.g. `"the RequireImdsv2 aspect"`)
   */
  constructor(scope: IConstruct | string, problems: PropProblem[]) {
    const lines = problems.map((p) => `  - ${p.prop}: got ${p.value}; allowed: ${p.allowed}`);
    const subject = typeof scope === 'string' ? scope : `${scope.constructor.name} '${scope.node.path}'`;
    super(`Invalid props for ${subject}:\n${lines.join('\n')}`);
    this.name = 'AgentFleetValidationError';
    this.problems = problems;
    Object.setPrototypeOf(this, AgentFleetValidationError.prototype);
  }
}

/**
 * Renders a prop value for an error message.
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (value instanceof Duration) return value.toHumanString();
  if (typeof value === 'string') return JSON.stringify(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * Collects prop problems during construction and throws them together.
 *
 * Values that are still tokens are skipped by the `check*` helpers: they are only
 * known at deploy time.
 */
export class PropsValidator {
  private readonly problems: PropProblem[] = [];

  constructor(private readonly scope: IConstruct | string) {}

  /** Records a problem unless `ok`. */
  public require(ok: boolean, prop: string, value: unknown, allowed: string): void {
    if (!ok) {
      this.problems.push({ prop, value: describeValue(value), allowed });
    }
  }

  /**
   * A duration that must be a whole number of days within [minDays, maxDays].
   */
  public wholeDays(prop: string, value: Duration | undefined, minDays: number, maxDays: number): void {
    if (value === undefined || value.isUnresolved()) return;
    const allowed = `a whole number of days from ${minDays} to ${maxDays}`;
    const minutes = value.toMinutes({ integral: false });
    const days = minutes / (24 * 60);
    this.require(Number.isInteger(days) && days >= minDays && days <= maxDays, prop, value, allowed);
  }

  /**
   * An integer within [min, max].
   */
  public integerInRange(prop: string, value: number | undefined, min: number, max: number): void {
    if (value === undefined || Token.isUnresolved(value)) return;
    this.require(Number.isInteger(value) && value >= min && value <= max, prop, value, `an integer from ${min} to ${max}`);
  }

  /**
   * A tag key that instances can read from the metadata service: IMDS only serves keys of
   * letters, digits and `+-=._:@,` (no spaces, no `/`), and `aws:` keys are reserved.
   */
  public imdsTagKey(prop: string, value: string | undefined): void {
    if (value === undefined || Token.isUnresolved(value)) return;
    this.require(/^[A-Za-z0-9+\-=._:@,]{1,128}$/.test(value) && !value.toLowerCase().startsWith('aws:'), prop, value,
      "1 to 128 letters, digits and +-=._:@, (what the instance metadata service serves), not starting with 'aws:'");
  }

  /**
   * Records the problems another construct found with props it was given, under the name
   * of the prop they came from here (`retention` of a part built from `telemetry` becomes
   * `telemetry.retention`). A problem already recorded is not repeated.
   *
   * @param problems the other construct's problems (`AgentFleetValidationError.problems`)
   * @param rename maps the other construct's prop to the prop of this scope it came from
   */
  public include(problems: PropProblem[], rename: (prop: string) => string): void {
    for (const problem of problems) {
      const renamed = { ...problem, prop: rename(problem.prop) };
      const known = this.problems.some((p) => p.prop === renamed.prop && p.value === renamed.value && p.allowed === renamed.allowed);
      if (!known) this.problems.push(renamed);
    }
  }

  /** How many problems are recorded so far. */
  public get problemCount(): number {
    return this.problems.length;
  }

  /** Throws every recorded problem at once, if any. */
  public throwIfInvalid(): void {
    if (this.problems.length > 0) {
      throw new AgentFleetValidationError(this.scope, this.problems);
    }
  }
}
