// The page's seconds per step (`#step-seconds`, a JSON array) as one line for the test logs:
// the first three steps (shader compilation) and the median of the rest.
export function stepSummary(json) {
  const secs = JSON.parse(json);
  const later = secs.slice(3).sort((a, b) => a - b);
  return `page seconds per step: first 3 (shader compilation) ${secs.slice(0, 3).map((x) => x.toFixed(2)).join(', ')}; median of the rest ${later[later.length >> 1]?.toFixed(3)}`;
}
