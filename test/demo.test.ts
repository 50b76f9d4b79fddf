/**
 * The demo (npm run demo): the XC-format reader, the command line's handling of bad input, the
 * hand-written encoder backward, and a tiny training run that must beat the untrained model.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { run } from '../demo/cli';
import { DataError, makeRng, readXc, readXcDataset, synthetic } from '../demo/data';
import { availableLosses } from '../demo/losses';
import { Encoder, scoresAll, scoresBackward, topK } from '../demo/model';
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
    expect(out.join('\n')).toMatch(/time per step: loss [\d.]+% \(fusedloss\), encoder/);
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
  it('scores and their backward match plain loops (odd sizes)', () => {
    const rng = makeRng(3);
    const [B, N, D] = [7, 13, 5];
    const rnd = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
    const Q = rnd(B * D);
    const K = rnd(N * D);
    const G = rnd(B * N);
    const S = new Float32Array(B * N);
    const dQ = new Float32Array(B * D);
    const dK = new Float32Array(N * D);
    scoresAll(Q, B, K, N, D, S);
    scoresBackward(G, Q, B, K, N, D, dQ, dK);
    for (let i = 0; i < B; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += Q[i * D + d] * K[j * D + d];
        expect(S[i * N + j]).toBeCloseTo(s, 5);
      }
    for (let i = 0; i < B; i++)
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let j = 0; j < N; j++) s += G[i * N + j] * K[j * D + d];
        expect(dQ[i * D + d]).toBeCloseTo(s, 5);
      }
    for (let j = 0; j < N; j++)
      for (let d = 0; d < D; d++) {
        let s = 0;
        for (let i = 0; i < B; i++) s += G[i * N + j] * Q[i * D + d];
        expect(dK[j * D + d]).toBeCloseTo(s, 5);
      }
    const top = new Int32Array(B * 3);
    topK(S, B, N, 3, top);
    for (let i = 0; i < B; i++) {
      const order = Array.from(S.subarray(i * N, i * N + N)).map((x, j) => [x, j]).sort((a, b) => b[0] - a[0]);
      expect(Array.from(top.subarray(i * 3, i * 3 + 3))).toEqual(order.slice(0, 3).map((x) => x[1]));
    }
  });

  it('embedding-bag + L2 normalisation backward matches finite differences', () => {
    const rng = makeRng(5);
    const enc = new Encoder(6, 4, rng);
    const bags = { ptr: Int32Array.from([0, 3, 5]), tok: Int32Array.from([0, 2, 5, 1, 2]), val: Float32Array.from([1, 0.5, 2, 1, 0.25]) };
    const w = Float32Array.from({ length: 8 }, () => rng.normal()); // f = Σ w·y
    const f = () => {
      const y = new Float32Array(8);
      enc.encode(bags, null, y, new Float32Array(2));
      return y.reduce((a, v, i) => a + v * w[i], 0);
    };
    const y = new Float32Array(8);
    const norms = new Float32Array(2);
    enc.encode(bags, null, y, norms);
    enc.backward(bags, null, y, norms, w);
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

  it('trains on the XC fixture files', () => {
    const ds = readXcDataset(fixture('train.txt'), fixture('test.txt'));
    const r = train(ds, availableLosses().find((e) => e.name === 'ce')!, { epochs: 30, batch: 4, dim: 8, tau: 0.1, lr: 0.05, seed: 1, device: 'cpu', progress: null });
    expect(r.precision[0]).toBeGreaterThanOrEqual(0.75);
  });
});
