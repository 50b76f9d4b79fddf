#!/usr/bin/env node
// Sets Nsight Compute's DRAM bytes per op (scripts/gpu/run.sh writes ncu-<op>.csv, one large
// call of each op, run with --print-units base) against the ideal of one read of S and, for the
// losses, one write of the gradient (in place), and gives the achieved bandwidth over the op's
// kernels. Prints Markdown.
//   node scripts/gpu/ncu_report.mjs DIR
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
const parseCsv = (text) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('"'))
    .map((l) => l.slice(1, -1).split('","'));

const lines = ['| op | shape | kernels | DRAM read (GB) | DRAM write (GB) | ideal (GB) | measured / ideal | time (ms) | achieved GB/s |', '|---|---|---|---|---|---|---|---|---|'];
for (const f of readdirSync(dir).filter((f) => /^ncu-.*\.csv$/.test(f)).sort()) {
  const op = f.slice(4, -4);
  const text = readFileSync(path.join(dir, f), 'utf8');
  const shapeLine = text.split('\n').find((l) => l.startsWith('ncu '));
  const m = shapeLine && shapeLine.match(/^ncu (\S+) (\d+)x(\d+)/);
  const rows = parseCsv(text);
  if (!m || rows.length < 2) {
    lines.push(`| ${op} | ? | no data (see ncu-${op}.err) | | | | | | |`);
    continue;
  }
  const header = rows[0];
  const col = (name) => header.indexOf(name);
  const [iKernel, iMetric, iValue, iId] = [col('Kernel Name'), col('Metric Name'), col('Metric Value'), col('ID')];
  let read = 0, write = 0, ns = 0;
  const kernels = new Set();
  for (const r of rows.slice(1)) {
    const v = Number(String(r[iValue]).replace(/,/g, ''));
    kernels.add(`${r[iId]}:${r[iKernel]}`);
    if (r[iMetric] === 'dram__bytes_read.sum') read += v;
    else if (r[iMetric] === 'dram__bytes_write.sum') write += v;
    else if (r[iMetric] === 'gpu__time_duration.sum') ns += v;
  }
  const n = Number(m[2]) * Number(m[3]);
  const ideal = n * 4 * (op === 'logSumExp' ? 1 : 2);  // float32: S once, and the gradient once
  const gb = (b) => (b / 1e9).toFixed(3);
  lines.push(
    `| ${op} | ${m[2]}×${m[3]} | ${kernels.size} | ${gb(read)} | ${gb(write)} | ${gb(ideal)} | ${((read + write) / ideal).toFixed(2)} | ${(ns / 1e6).toFixed(3)} | ${((read + write) / ns).toFixed(0)} |`,
  );
}
console.log(lines.join('\n'));
