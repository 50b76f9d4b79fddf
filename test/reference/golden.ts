/** The PyTorch float64 golden cases (test/fixtures/cases.jsonl, copied from shared/golden). */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface GoldenCase {
  fn: string;
  shape: [number, number];
  S: number[];
  opts: Record<string, unknown>;
  labels?: number[];
  positives?: { rowPtr: number[]; cols: number[]; weights?: number[] };
  k?: number | number[];
  upstream?: number[];
  loss: number;
  grad: number[];
  dScale?: number;
  values?: number[];
  threshold?: number[];
}

export function loadGoldenCases(): GoldenCase[] {
  const file = fileURLToPath(new URL('../fixtures/cases.jsonl', import.meta.url));
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as GoldenCase);
}
