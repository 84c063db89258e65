/** The time source of the handlers; tests and benchmarks replace `now`. */
export const clock = {
  now: (): number => Date.now(),
};
