import { Duration } from 'aws-cdk-lib';

/**
 * When a State Manager association re-applies the install document.
 */
export abstract class AssociationSchedule {
  /**
   * Every `interval`: whole minutes (at least 30), hours or days, as State Manager allows.
   *
   * @param interval e.g. `Duration.days(1)`
   */
  public static rate(interval: Duration): AssociationSchedule {
    return new RateSchedule(interval);
  }

  /**
   * A State Manager cron expression: `cron(minutes hours day-of-month month day-of-week [year])`,
   * e.g. `cron(0 3 ? * * *)` for 03:00 UTC every day.
   *
   * @param expression the whole expression, including `cron(` and `)`
   */
  public static cron(expression: string): AssociationSchedule {
    return new CronSchedule(expression);
  }

  /** The expression State Manager receives, e.g. `rate(1 day)`. */
  public abstract readonly expressionString: string;

  /**
   * Why the schedule is invalid, or undefined when it is valid.
   * @internal
   */
  public abstract _problem(): string | undefined;
}

class RateSchedule extends AssociationSchedule {
  public readonly expressionString: string;
  private readonly invalid?: string;

  constructor(interval: Duration) {
    super();
    const minutes = interval.isUnresolved() ? NaN : interval.toMinutes({ integral: false });
    if (!Number.isInteger(minutes) || minutes < 30) {
      this.invalid = 'whole minutes, at least 30';
      this.expressionString = `rate(${interval.toHumanString()})`;
    } else if (minutes % (24 * 60) === 0) {
      const days = minutes / (24 * 60);
      this.expressionString = `rate(${days} ${days === 1 ? 'day' : 'days'})`;
    } else if (minutes % 60 === 0) {
      const hours = minutes / 60;
      this.expressionString = `rate(${hours} ${hours === 1 ? 'hour' : 'hours'})`;
    } else {
      this.expressionString = `rate(${minutes} minutes)`;
    }
  }

  public _problem(): string | undefined {
    return this.invalid;
  }
}

/** Six or seven fields of digits, names and the cron punctuation State Manager accepts. */
const CRON = /^cron\((\S+\s+){5}\S+(\s+\S+)?\)$/;
const CRON_FIELD = /^[0-9A-Za-z*?,/#L-]+$/;

class CronSchedule extends AssociationSchedule {
  constructor(public readonly expressionString: string) {
    super();
  }

  public _problem(): string | undefined {
    const fields = this.expressionString.replace(/^cron\(|\)$/g, '').trim().split(/\s+/);
    const ok = CRON.test(this.expressionString) && fields.every((f) => CRON_FIELD.test(f));
    return ok ? undefined : 'cron(minutes hours day-of-month month day-of-week [year]) with fields of digits, names and * ? , / - # L';
  }
}
