#!/usr/bin/env node
// Joins bench/gpu.mjs's and torch_baselines.py's JSON into one Markdown table of ratios.
import { readFileSync } from 'node:fs';

const [fusedFile, torchFile] = process.argv.slice(2);
const fused = JSON.parse(readFileSync(fusedFile, 'utf8'));
let torch = {};
try { torch = JSON.parse(readFileSync(torchFile, 'utf8')); } catch { /* torch run failed: ratios left blank */ }
const lines = [
  `# GPU benchmark: ${fused.device}`,
  '',
  `Device-to-device copy: ${fused.copyGBs.toFixed(0)} GB/s (fusedloss process), ${torch.copyGBs ? torch.copyGBs.toFixed(0) : '–'} GB/s (torch process).`,
  '',
  '| op | B×N | dtype | fusedloss ms | % of copy bandwidth | torch eager ms | speed-up |',
  '|---|---|---|---:|---:|---:|---:|',
];
for (const [op, shapes] of Object.entries(fused.ops))
  for (const [shape, byDtype] of Object.entries(shapes))
    for (const [dtype, r] of Object.entries(byDtype)) {
      const t = torch[op]?.[shape]?.[dtype];
      lines.push(`| ${op} | ${shape} | ${dtype} | ${r.ms.toFixed(3)} | ${(r.ofCopy * 100).toFixed(0)}% | ${t ? t.toFixed(3) : '–'} | ${t ? (t / r.ms).toFixed(1) + '×' : '–'} |`);
    }
console.log(lines.join('\n'));
