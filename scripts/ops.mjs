// The one registry of ops: every file of scripts/ops/ (scripts/ops/<op>.mjs, one per loss or op:
// its float64 reference and its entries, the matrix form's and the form from embeddings), collected
// here by pattern. Everything that drives every op reads it:
//   scripts/backend-ops.mjs       each case on every live backend, compared with the CPU
//   bench/run.mjs, bench/chart.mjs  CPU timings against the peers and the copy floor
//   bench/gpu.mjs, scripts/gpu/   GPU timings (and shapes.py hands `gpu.shapes` to the PyTorch baselines)
//   scripts/gpu/checks.mjs        the GPU checklist
//   test/ops-under-test.ts        the property, async, lifetime and leak tests (op.property)
//   test/workers.test.ts          every case in worker threads
//   bench/gpu-embeddings.mjs      the forms from embeddings on CUDA (embeddingsOps)
// Adding an op is one file in scripts/ops/ and nothing here. It is plain JS that node runs as it is, on the GPU machine too
// (only node and dist/ there): the test-only parts take fast-check and the float64 references
// from the test kit they are called with, and import nothing themselves.
//
// A file exports `entries`, an array of entries, and its reference functions (the tests import
// them from it). An entry of an op on a scores matrix (`ops`):
//   name, fn, asyncFn                the package's function and its async twin (fl[fn], fl[asyncFn])
//   args                             the arguments before the options, by kind: 'scores', then
//                                    'labels' (Int32Array) or 'positives' (CSR); inputs objects
//                                    hold them under these names, the options under `opts`
//   options                          the op's own options, beyond the common ones (LOSS_OPTION_KEYS
//                                    for a loss; shape and dtype, the bare-array form, for any op);
//                                    test/options.test.ts checks them against what the op accepts
//   returns                          'loss' (a LossResult) or 'lse' (the row log-sum-exps)
//   reference                        its float64 oracle, the function its file exports
//   cases: [{ rows, cols, kind, dtype, ...op options }]       inputs for the backend comparison
//   make(fl, rng, c) -> inputs                                host inputs (Tensor scores + args + opts)
//   run(fl, inputs, device) -> { key: Float32Array | number } runs on 'cpu' or 'cuda' (from fn/args)
//   tol: { float32, float16, bfloat16 }                       max relative error vs the CPU
//   bench: { sizes: [{rows, cols, ...}], bytes(c), prepare?, peers: { name: (ctx, inputs) => { fn, dispose? } } }
//          bytes(c) counts the bytes the op must move at least (its copy-floor traffic).
//   gpu: { shapes: [[rows, cols]], opts?, positivesPerRow? }   the GPU bench (bench/gpu.mjs)
//   property(kit, entry) -> { cases, make, outputs, reference, check, views, mutations, heavy, small }
//          the property-test parts (test/ops-under-test.ts: the kit, and what each part means)
//
// An entry of an op on queries and keys (`embeddingsOps`: linearCrossEntropy and every
// <loss>FromEmbeddings, docs/MATH.md §3.9–3.10; scripts/backend-ops.mjs --embeddings):
//   name, fn, asyncFn          the package's function and its async twin
//   args                       'queries', 'keys' (B×D, N×D: hidden rows and classes), then
//                              'labels' or 'positives'
//   cases: [{ rows, dim, cols, dtype, ...}]   B queries (hidden rows), D, N keys (classes)
//   make(fl, rng, c) -> inputs                host inputs: { queries, keys, positives?, labels?, opts }
//   run(fl, inputs, device, async?) -> { key: Float32Array | number }   on 'cpu' or 'cuda'
//   tol: { float32, float16, bfloat16 }      max relative error (L2) vs the CPU
//   gpu: { shapes: [[B, D, N]], opts }       the GPU bench shapes (bfloat16 and float32)
import { readdirSync } from 'node:fs';
import { runOn } from './lib/op-kit.mjs';

export { argsOf, place, randomCsr, randomLabels, scoresTensor } from './lib/op-kit.mjs';

const dir = new URL('./ops/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.mjs')).sort();

/** Every entry of every file of scripts/ops/, in file order. */
export const registry = (await Promise.all(files.map((f) => import(new URL(f, dir).href)))).flatMap((m) => m.entries);

/** The ops on a scores matrix. */
export const ops = registry.filter((op) => op.args[0] === 'scores');
/** The ops on queries and keys: linearCrossEntropy and the forms from embeddings. */
export const embeddingsOps = registry.filter((op) => op.args[0] === 'queries');

for (const op of ops) op.run ??= (fl, inputs, device) => runOn(op, fl, inputs, device);

/** The GPU bench shapes of every op, { name: [[rows, cols]] } (scripts/gpu/shapes.py reads them). */
export const gpuShapes = () => Object.fromEntries(ops.map((op) => [op.name, op.gpu.shapes]));

/** The GPU bench shapes of every op on queries and keys, { name: [[B, D, N]] } (scripts/gpu/shapes.py reads them). */
export const embeddingsGpuShapes = () => Object.fromEntries(embeddingsOps.map((op) => [op.name, op.gpu.shapes]));
