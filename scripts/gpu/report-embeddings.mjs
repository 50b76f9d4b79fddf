#!/usr/bin/env node
// Joins bench/gpu-embeddings.mjs's and torch_embeddings.py's JSON into one Markdown table: each
// step's time, its FLOP rate over the 3 matrix products (6·B·N·D) against the card's bf16 matmul
// rate measured by PyTorch in the same run, and PyTorch eager's time and extra memory.
import { readFileSync } from 'node:fs';

const [fusedFile, torchFile] = process.argv.slice(2);
const fused = JSON.parse(readFileSync(fusedFile, 'utf8'));
let torch = {};
try { torch = JSON.parse(readFileSync(torchFile, 'utf8')); } catch { /* torch run failed: its columns left blank */ }
const mm = torch.matmulTFLOPs;
const lines = [
  `# GPU benchmark, losses from embeddings: ${fused.device}`,
  '',
  `Measured in the same run: bf16 matmul ${mm ? mm.toFixed(0) : '–'} TFLOP/s (PyTorch, 8192³); device copy ${fused.copyGBs.toFixed(0)} GB/s (fusedloss), ${torch.copyGBs ? torch.copyGBs.toFixed(0) : '–'} GB/s (PyTorch).`,
  'TFLOP/s counts the 3 products of a forward+backward step, 6·B·N·D. fusedloss scratch: at most the memoryBudget shown.',
  '',
  '| op | B×D×N | dtype | fusedloss ms | TFLOP/s | % of bf16 matmul | scratch budget MiB | torch eager ms | torch extra MiB | speed-up |',
  '|---|---|---|---:|---:|---:|---:|---:|---:|---:|',
];
for (const [op, shapes] of Object.entries(fused.ops))
  for (const [shape, byDtype] of Object.entries(shapes))
    for (const [dtype, r] of Object.entries(byDtype)) {
      const t = torch[op]?.[shape]?.[dtype];
      if (r.error) {
        lines.push(`| ${op} | ${shape} | ${dtype} | failed: ${r.error.slice(0, 80)} | | | | ${t?.ms ? t.ms.toFixed(2) : '–'} | | |`);
        continue;
      }
      lines.push(`| ${op} | ${shape} | ${dtype} | ${r.ms.toFixed(2)} | ${r.tflops.toFixed(1)} | ${mm ? ((r.tflops / mm) * 100).toFixed(0) + '%' : '–'} | ${(r.budget / 2 ** 20).toFixed(0)} | ` +
        `${t?.ms ? t.ms.toFixed(2) : t?.error ? 'OOM' : '–'} | ${t?.peakExtraMiB ? t.peakExtraMiB.toFixed(0) : '–'} | ${t?.ms ? (t.ms / r.ms).toFixed(2) + '×' : '–'} |`);
    }
console.log(lines.join('\n'));
