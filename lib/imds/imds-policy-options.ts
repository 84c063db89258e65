/**
 * How the fleet's hop limit applies to an instance or template that already has one.
 */
export enum HopLimitPolicy {
  /**
   * Raise lower hop limits to the fleet's, keep higher ones: enforcement never lowers a limit
   * that containers or overlay networks on that host may need. Kept limits are reported.
   */
  AT_LEAST = 'AT_LEAST',
  /** Set every hop limit to exactly the fleet's, lowering higher ones. */
  EXACT = 'EXACT',
}
