/**
 * The demo (npm run demo): the XC-format reader, the command line's handling of bad input, the
 * encoder's backward and the chain through the loss from embeddings, the tiled evaluation, and
 * a tiny training run that must beat the untrained model.
 */
import * as fl from 'fusedloss';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { run } from '../demo/cli';
import { DataError, makeRng, readXc, readXcDataset, synthetic } from '../demo/data';
import { availableLosses, runLoss } from '../demo/losses';
import { Encoder, foldTopK, normalizeRows, normalizeRowsBackward, scoresAll, topK } from '../demo/model';
import { evaluate, popularity, train } from '../demo/train';

const fixture = (f: string) => path.join(__dirname, 'fixtures', 'xc', f);
const dir = mkdtempSync(path.join(tmpdir(), 'fusedloss-demo-'));
function file(name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

describe('XC repository format reader', () => {
  it('reads the fixture: labels, features, weights, an unlabelled point', () => {
    const { features, labels, split } = readXc(fixture('train.txt'));
    expect([features, labels]).toEqual([10, 4]);
    expect(Array.from(split.labels.rowPtr)).toEqual([0, 1, 3, 4, 6, 7, 8, 9, 11, 11, 12, 13, 14]);
    expect(Array.from(split.labels.cols.subarray(0, 6))).toEqual([0, 0, 1, 1, 1, 2]);
    expect(Array.from(split.docs.tok.subarray(split.docs.ptr[1], split.docs.ptr[2]))).toEqual([0, 1, 5]);
    expect(Array.from(split.docs.val.subarray(split.docs.ptr[1], split.docs.ptr[2]))).toEqual([0.800000011920929, 0.4000000059604645, 1]);
    expect(split.docs.ptr[9] - split.docs.ptr[8]).toBe(1); // " 9:0.3": no labels, one feature
  });

  it('gives each label a private token after the features (the format has no label text)', () => {
    const ds = readXcDataset(fixture('train.txt'), fixture('test.txt'));
    expect(ds.vocab).toBe(14);
    expect(Array.from(ds.labelBags.tok)).toEqual([10, 11, 12, 13]);
  });

  it.each([
    ['a bad header', '2 x 3\n0 1:1\n', /:1: expected the header/],
    ['a label out of range', '2 4 3\n0 1:1\n3 1:1\n', /:3: label "3" is not an integer in \[0, 3\)/],
    ['a feature out of range', '2 4 3\n0 1:1\n1 4:1\n', /:3: expected "feature:value" with a feature in \[0, 4\), got "4:1"/],
    ['a value that is not a number', '2 4 3\n0 1:1\n1 2:abc\n', /:3: feature 2 has value "abc"/],
    ['a token without a colon', '2 4 3\n0 1:1\n1 2\n', /:3: expected "feature:value"/],
    ['a duplicate label', '1 4 3\n1,1 2:1\n', /:2: label 1 appears twice/],
    ['too few points', '3 4 3\n0 1:1\n1 2:1\n', /:4: the header promises 3 points, the file ends after 2/],
    ['too many points', '1 4 3\n0 1:1\n1 2:1\n', /:3: the header promises 1 points; this line is one too many/],
  ])('rejects %s with its line number', (_, text, msg) => {
    const f = file('bad.txt', text);
    expect(() => readXc(f)).toThrow(DataError);
    expect(() => readXc(f)).toThrow(msg);
  });

  it('rejects a missing file and mismatched train/test headers', () => {
    expect(() => readXc(path.join(dir, 'nope.txt'))).toThrow(/nope.txt: cannot read \(ENOENT\)/);
    const t = file('t.txt', '1 11 4\n0 1:1\n');
    expect(() => readXcDataset(fixture('train.txt'), t)).toThrow(/t.txt:1: the header says 11 features and 4 labels/);
  });
});

describe('command line', () => {
  const errors: string[] = [];
  afterEach(() => {
    vi.restoreAllMocks();
    errors.length = 0;
  });
  const runQuiet = (argv: string[]) => {
    vi.spyOn(console, 'error').mockImplementation((m: string) => void errors.push(m));
    vi.spyOn(console, 'log').mockImplementation(() => {});
    return run(argv);
  };

  it.each([
    [['--frobnicate'], /unknown option --frobnicate/],
    [['--epohcs', '2'], /unknown option --epohcs; did you mean --epochs\?/],
    [['extra'], /unexpected argument "extra"/],
    [['--epochs', '0'], /--epochs: expected a positive integer, got "0"/],
    [['--epochs'], /--epochs needs a value/],
    [['--loss', 'nope'], /--loss: expected one of .*ce/],
    [['--device', 'tpu'], /--device: expected cpu or cuda/],
    [['--budget', '-1'], /--budget: expected a positive number, got "-1"/],
    [['--train', 'x'], /--train and --test go together/],
  ])('rejects %j with exit status 2 and no stack trace', (argv, msg) => {
    expect(runQuiet(argv)).toBe(2);
    expect(errors.join('\n')).toMatch(msg);
    expect(errors.join('\n')).not.toMatch(/\n\s+at /);
  });

  it('reports a malformed data file with its line number, exit status 1', () => {
    const bad = file('bad-cli.txt', '2 4 3\n0 1:1\n1 2:x\n');
    expect(runQuiet(['--train', bad, '--test', bad])).toBe(1);
    expect(errors.join('\n')).toMatch(/bad-cli.txt:3: feature 2 has value "x"/);
    expect(errors.join('\n')).not.toMatch(/\n\s+at /);
  });

  it('trains end to end: XC files, and --compare prints one table row per loss plus the baseline', () => {
    const out: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((m: string) => void out.push(m));
    expect(run(['--train', fixture('train.txt'), '--test', fixture('test.txt'), '--epochs', '2', '--batch', '4', '--dim', '8', '--loss', 'ce'])).toBe(0);
    expect(out.join('\n')).toMatch(/P@1 +[\d.]+ +P@3/);
    expect(out.join('\n')).toMatch(/time per step: loss [\d.]+% \(fusedloss: scores, loss, gradients\), encoder/);
    expect(out.join('\n')).toMatch(/peak memory: \d+ MiB resident \(maxRSS\)/);
    out.length = 0;
    expect(run(['--compare', '--docs', '600', '--labels', '40', '--epochs', '1', '--dim', '16'])).toBe(0);
    const rowsOut = out.join('\n').split('\n').filter((l) => l.startsWith('| '));
    expect(rowsOut.length).toBe(availableLosses().length + 2); // header, losses, baseline
    expect(rowsOut[rowsOut.length - 1]).toMatch(/^\| popularity baseline/);
  });

  it('offers only the losses this build exports', () => {
    const names = availableLosses().map((e) => e.name);
    expect(names).toContain('ce');
    vi.spyOn(console, 'log').mockImplementation((m: string) => void errors.push(m));
    expect(run(['--help'])).toBe(0);
    for (const n of names) expect(errors.join('\n')).toContain(`  ${n} `);
  });
});

describe('encoder', () => {
  it('scores match plain loops, and top-k folded over column tiles equals one pass (ties included)', () => {
    const rng = makeRng(3);
    const [B, N, D] = [7, 13, 5];
    const rnd = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
    const Q = rnd(B * D);
    const K = rnd(N * D);
    const S = new Float32Array(B * N);
    scoresAll(Q, B, K, N, D, S);
    for (let i = 0; i < B; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += Q[i * D + d] * K[j * D + d];
        expect(S[i * N + j]).toBeCloseTo(s, 5);
      }
    S[2 * N + 1] = S[2 * N + 9] = S[2 * N + 12] = 100; // a three-way tie across tiles: lower index first
    const top = new Int32Array(B * 3);
    topK(S, B, N, 3, top);
    for (let i = 0; i < B; i++) {
      const order = Array.from(S.subarray(i * N, i * N + N)).map((x, j) => [x, j]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
      expect(Array.from(top.subarray(i * 3, i * 3 + 3))).toEqual(order.slice(0, 3).map((x) => x[1]));
    }
    const best = new Float32Array(B * 3).fill(-Infinity);
    const tiled = new Int32Array(B * 3).fill(-1);
    for (const [j0, w] of [[0, 4], [4, 5], [9, 4]]) {
      const tile = new Float32Array(B * w);
      for (let i = 0; i < B; i++) tile.set(S.subarray(i * N + j0, i * N + j0 + w), i * w);
      foldTopK(tile, B, w, j0, 3, best, tiled);
    }
    expect(Array.from(tiled)).toEqual(Array.from(top));
  });

  it('embedding-bag backward and L2 normalisation backward match finite differences', () => {
    const rng = makeRng(5);
    const enc = new Encoder(6, 4, rng);
    const bags = { ptr: Int32Array.from([0, 3, 5, 5]), tok: Int32Array.from([0, 2, 5, 1, 2]), val: Float32Array.from([1, 0.5, 2, 1, 0.25]) };
    const w = Float32Array.from({ length: 12 }, () => rng.normal()); // f = Σ w·normalize(encode(table))
    const f = () => {
      const y = new Float32Array(12);
      enc.encode(bags, null, y);
      normalizeRows(y, 3, 4, new Float32Array(3));
      return y.reduce((a, v, i) => a + v * w[i], 0);
    };
    const y = new Float32Array(12);
    const norms = new Float32Array(3);
    enc.encode(bags, null, y);
    expect(Array.from(y.subarray(8))).toEqual([0, 0, 0, 0]); // the empty bag
    normalizeRows(y, 3, 4, norms);
    const dy = w.slice();
    normalizeRowsBackward(y, 3, 4, norms, dy);
    expect(Array.from(dy.subarray(8))).toEqual([0, 0, 0, 0]);
    enc.backward(bags, null, dy);
    const h = 1e-2;
    for (const i of [0, 3, 9, 21]) {
      const x = enc.table[i];
      enc.table[i] = x + h;
      const up = f();
      enc.table[i] = x - h;
      const down = f();
      enc.table[i] = x;
      expect(enc.grad[i]).toBeCloseTo((up - down) / (2 * h), 3);
    }
  });

  // The demo's whole chain: bag means → the loss from embeddings (cosine/τ) → scatter into the
  // table, for a loss with `normalize` and for linearCrossEntropy with the cosine taken in TS.
  it.each(['decoupled', 'ce'])('a step of %s: the table gradient matches finite differences of the loss', (name) => {
    const entry = availableLosses().find((e) => e.name === name)!;
    const ds = synthetic({ seed: 6, labels: 30, docs: 40, testFraction: 0.2 });
    const [B, D, L] = [5, 6, ds.numLabels];
    const enc = new Encoder(ds.vocab, D, makeRng(6));
    const ids = Int32Array.from({ length: B }, (_, i) => 3 * i);
    const rowPtr = new Int32Array(B + 1);
    const cols: number[] = [];
    ids.forEach((d, r) => {
      for (let k = ds.train.labels.rowPtr[d]; k < ds.train.labels.rowPtr[d + 1]; k++) cols.push(ds.train.labels.cols[k]);
      rowPtr[r + 1] = cols.length;
    });
    const positives = { rowPtr, cols: Int32Array.from(cols) };
    const [Q, dQ, K, dK] = [B * D, B * D, L * D, L * D].map((n) => new Float32Array(n));
    const buffers = { queries: fl.tensor(Q, [B, D]), keys: fl.tensor(K, [L, D]), gradQueries: fl.tensor(dQ, [B, D]), gradKeys: fl.tensor(dK, [L, D]) };
    const loss = () => {
      enc.encode(ds.train.docs, ids, Q);
      enc.encode(ds.labelBags, null, K);
      return runLoss(entry, buffers, positives, { scale: 1 / 0.5, memoryBudget: fl.DEFAULT_MEMORY_BUDGET, device: 'cpu' }, () => 0);
    };
    loss();
    enc.backward(ds.train.docs, ids, dQ);
    enc.backward(ds.labelBags, null, dK);
    const grad = enc.grad.slice();
    // Table rows both sides read: a label's first private token (label side) and a document's token.
    const rowsToCheck = [ds.labelBags.tok[0], ds.labelBags.tok[7], ds.train.docs.tok[ds.train.docs.ptr[ids[1]]]];
    const h = 1e-2;
    let checked = 0;
    for (const t of rowsToCheck)
      for (let d = 0; d < D; d += 2) {
        const i = t * D + d;
        const x = enc.table[i];
        enc.table[i] = x + h;
        const up = loss();
        enc.table[i] = x - h;
        const down = loss();
        enc.table[i] = x;
        const fd = (up - down) / (2 * h);
        expect(Math.abs(grad[i] - fd), `${name} table[${t}][${d}]`).toBeLessThan(2e-3 + 2e-2 * Math.abs(fd));
        if (Math.abs(fd) > 1e-3) checked++;
      }
    expect(checked).toBeGreaterThan(3);
  });
});

describe('training', () => {
  it('synthetic data: 1–10 labels per document, a long tail, a shared vocabulary', () => {
    const ds = synthetic({ seed: 2, labels: 200, docs: 2000, testFraction: 0.2 });
    const counts = new Float64Array(200);
    const { rowPtr, cols } = ds.train.labels;
    for (let i = 0; i + 1 < rowPtr.length; i++) {
      const n = rowPtr[i + 1] - rowPtr[i];
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThanOrEqual(10);
    }
    for (const l of cols) counts[l]++;
    const sorted = Array.from(counts).sort((a, b) => b - a);
    expect(sorted[0]).toBeGreaterThan(10 * sorted[100]); // long-tailed
    expect(Math.max(...ds.labelBags.tok)).toBeLessThan(ds.vocab);
    expect(synthetic({ seed: 2, labels: 200, docs: 2000, testFraction: 0.2 }).train.docs.tok).toEqual(ds.train.docs.tok);
  });

  it('a tiny run with each available loss beats the untrained model and the popularity baseline', () => {
    const ds = synthetic({ seed: 4, labels: 300, docs: 3000, testFraction: 0.2 });
    const untrained = evaluate(ds, new Encoder(ds.vocab, 32, makeRng(4)));
    const base = popularity(ds);
    for (const e of availableLosses()) {
      const r = train(ds, e, { epochs: 2, batch: 128, dim: 32, tau: 0.05, lr: 0.01, seed: 4, device: 'cpu', progress: null });
      expect(r.epochs[1].loss, e.name).toBeLessThan(r.epochs[0].loss);
      expect(r.precision[0], e.name).toBeGreaterThan(untrained[0] + 0.1);
      // One-vs-all BCE on cosine scores trails the softmax family by far (as in DEXML); it
      // still has to learn, but only the softmax family must double the baseline here.
      if (e.name !== 'bce') expect(r.precision[0], e.name).toBeGreaterThan(2 * base[0]);
      expect(r.lossSeconds).toBeGreaterThan(0);
    }
  });

  it('the tiled evaluation equals ranking every test document against the whole label matrix', () => {
    const ds = synthetic({ seed: 7, labels: 5000, docs: 300, testFraction: 0.2 }); // two column tiles, the second partial
    const D = 16;
    const enc = new Encoder(ds.vocab, D, makeRng(7));
    const L = ds.numLabels;
    const n = ds.test.labels.rowPtr.length - 1;
    const K = new Float32Array(L * D);
    enc.encode(ds.labelBags, null, K);
    normalizeRows(K, L, D, new Float32Array(L));
    const Q = new Float32Array(n * D);
    enc.encode(ds.test.docs, null, Q);
    normalizeRows(Q, n, D, new Float32Array(n));
    const S = new Float32Array(n * L);
    scoresAll(Q, n, K, L, D, S);
    const top = new Int32Array(n * 5);
    topK(S, n, L, 5, top);
    const p = [0, 0, 0];
    for (let i = 0; i < n; i++) {
      const have = ds.test.labels.cols.subarray(ds.test.labels.rowPtr[i], ds.test.labels.rowPtr[i + 1]);
      const hits = (k: number) => Array.from(top.subarray(i * 5, i * 5 + k)).filter((l) => have.includes(l)).length;
      p[0] += hits(1) / n;
      p[1] += hits(3) / 3 / n;
      p[2] += hits(5) / 5 / n;
    }
    const got = evaluate(ds, enc);
    for (let k = 0; k < 3; k++) expect(got[k]).toBeCloseTo(p[k], 12);
  });

  it('trains on the XC fixture files', () => {
    const ds = readXcDataset(fixture('train.txt'), fixture('test.txt'));
    const r = train(ds, availableLosses().find((e) => e.name === 'ce')!, { epochs: 30, batch: 4, dim: 8, tau: 0.1, lr: 0.05, seed: 1, device: 'cpu', progress: null });
    expect(r.precision[0]).toBeGreaterThanOrEqual(0.75);
  });
});
