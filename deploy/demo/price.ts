/**
 * The demo service's price rule, as its users expect it: `quantity` units at 1.99 each plus 7 %
 * VAT, in cents, rounded half up. The load generator checks every answer against it; the service's
 * v1 code breaks it (charges one unit too many), the v2 patch restores it.
 */
export const UNIT_CENTS = 199;
/** VAT added to the net price, percent. */
export const VAT_PERCENT = 7;
/** Largest quantity the service accepts. */
export const MAX_QUANTITY = 1_000_000;

/** The correct price in cents for `quantity` units (exact in doubles up to MAX_QUANTITY). */
export function correctPrice(quantity: number): number {
  return Math.floor((quantity * UNIT_CENTS * (100 + VAT_PERCENT) + 50) / 100);
}
