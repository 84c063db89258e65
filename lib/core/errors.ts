/**
 * Helpers for recognising this library's errors.
 */
export class AgentFleetErrors {
  /**
   * True when `x` is the error this library throws for invalid props.
   *
   * @param x any value, typically a caught error
   */
  public static isValidationError(x: unknown): boolean {
    return x instanceof Error && x.name === 'AgentFleetValidationError';
  }

  private constructor() {}
}
