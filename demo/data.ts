/**
 * The demo's data: bags of tokens for documents and labels over one shared vocabulary, made
 * either by a seeded synthetic XMC generator or read from the Extreme Classification
 * Repository's bag-of-words text format.
 */
import { readFileSync } from 'node:fs';

/** Rows of (token, weight) bags in CSR form: row r is tok/val[ptr[r] .. ptr[r+1]). */
export interface Bags {
  ptr: Int32Array;
  tok: Int32Array;
  val: Float32Array;
}

/** Each document's labels in CSR form (the shape fusedloss takes as `positives`). */
export interface LabelSets {
  rowPtr: Int32Array;
  cols: Int32Array;
}

export interface Split {
  docs: Bags;
  labels: LabelSets;
}

export interface Dataset {
  name: string;
  vocab: number;
  numLabels: number;
  /** Each label's "description": the bag the shared encoder reads for it. */
  labelBags: Bags;
  train: Split;
  test: Split;
}

export const rows = (b: { ptr: Int32Array } | { rowPtr: Int32Array }) => ('ptr' in b ? b.ptr : b.rowPtr).length - 1;

/** A small seeded generator (xorshift64 on two words); its sequence defines the synthetic data. */
export function makeRng(seed: number) {
  let s0 = (seed * 0x9e3779b1) >>> 0 || 1;
  let s1 = (seed ^ 0x85ebca6b) >>> 0 || 2;
  const next = () => {
    let t = s0;
    const s = s1;
    s0 = s;
    t ^= t << 11;
    t ^= t >>> 8;
    s1 = (t ^ s ^ (s >>> 19)) >>> 0;
    return s1;
  };
  for (let i = 0; i < 8; i++) next();
  const u = () => (next() + 0.5) / 4294967296;
  return { u, int: (n: number) => Math.floor(u() * n), normal: () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) };
}
export type Rng = ReturnType<typeof makeRng>;

/** Draws from a fixed discrete distribution by binary search over its cumulative weights. */
function sampler(weights: Float64Array) {
  const cdf = new Float64Array(weights.length);
  let s = 0;
  for (let i = 0; i < weights.length; i++) cdf[i] = s += weights[i];
  return (rng: Rng) => {
    const x = rng.u() * s;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

const zipf = (n: number, exponent: number) => Float64Array.from({ length: n }, (_, r) => 1 / Math.pow(r + 1, exponent));

/** Builds CSR bags from arrays of token lists (all weights 1; repeated tokens count twice). */
function bagsOf(lists: number[][]): Bags {
  const ptr = new Int32Array(lists.length + 1);
  for (let i = 0; i < lists.length; i++) ptr[i + 1] = ptr[i] + lists[i].length;
  const tok = new Int32Array(ptr[lists.length]);
  lists.forEach((l, i) => tok.set(l, ptr[i]));
  return { ptr, tok, val: new Float32Array(tok.length).fill(1) };
}

function labelSetsOf(lists: number[][]): LabelSets {
  const b = bagsOf(lists.map((l) => [...l].sort((a, c) => a - c)));
  return { rowPtr: b.ptr, cols: b.tok };
}

export interface SyntheticOptions {
  seed: number;
  labels: number;
  docs: number;
  /** Fraction of the documents held out for the test split. */
  testFraction: number;
}

/**
 * A synthetic XMC dataset in the spirit of DEXML's benchmarks:
 * - labels fall into topics; each label has private "name" tokens and its topic's tokens, and
 *   its description shows only half of its private tokens (the encoder must learn the rest
 *   from co-occurrence in documents);
 * - documents carry 1–10 labels with Zipf-distributed label popularity (a long tail), and
 *   their tokens come from their labels' names and topics plus Zipf-distributed noise words;
 * - documents and labels share one vocabulary.
 */
export function synthetic(o: SyntheticOptions): Dataset {
  const rng = makeRng(o.seed);
  const L = o.labels;
  const topics = Math.max(1, Math.round(L / 20));
  const privatePerLabel = 6;
  const perTopic = 30;
  const noiseWords = 4000;
  // Vocabulary layout: [private label tokens | topic tokens | noise words].
  const topicBase = L * privatePerLabel;
  const noiseBase = topicBase + topics * perTopic;
  const vocab = noiseBase + noiseWords;

  const topicOf = Int32Array.from({ length: L }, () => rng.int(topics));
  const privateTok = (l: number, k: number) => l * privatePerLabel + k;
  const topicTok = (t: number) => topicBase + t * perTopic + rng.int(perTopic);
  const noise = sampler(zipf(noiseWords, 1.05));

  const descriptions: number[][] = [];
  for (let l = 0; l < L; l++) {
    const d = [privateTok(l, 0), privateTok(l, 1), privateTok(l, 2)];
    for (let k = 0; k < 3; k++) d.push(topicTok(topicOf[l]));
    descriptions.push(d);
  }

  // Popularity: Zipf over a random ranking of the labels.
  const rank = Int32Array.from({ length: L }, (_, i) => i);
  for (let i = L - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [rank[i], rank[j]] = [rank[j], rank[i]];
  }
  const popularity = new Float64Array(L);
  const z = zipf(L, 0.9);
  for (let r = 0; r < L; r++) popularity[rank[r]] = z[r];
  const drawLabel = sampler(popularity);
  const labelCount = sampler(zipf(10, 1.3)); // 0..9 -> 1..10 labels, mostly 1-3

  const docs: number[][] = [];
  const docLabels: number[][] = [];
  for (let i = 0; i < o.docs; i++) {
    const want = 1 + labelCount(rng);
    const ls = new Set<number>();
    // Labels of one document mostly share its first label's topic, as real tags do.
    const first = drawLabel(rng);
    ls.add(first);
    for (let tries = 0; ls.size < want && tries < 50; tries++) {
      const l = drawLabel(rng);
      if (topicOf[l] === topicOf[first] || rng.u() < 0.3) ls.add(l);
    }
    const labels = [...ls];
    const len = 20 + rng.int(40);
    const toks: number[] = [];
    for (let t = 0; t < len; t++) {
      const x = rng.u();
      const l = labels[rng.int(labels.length)];
      if (x < 0.2) toks.push(privateTok(l, rng.int(privatePerLabel)));
      else if (x < 0.45) toks.push(topicTok(topicOf[l]));
      else toks.push(noiseBase + noise(rng));
    }
    docs.push(toks);
    docLabels.push(labels);
  }
  const nTest = Math.round(o.docs * o.testFraction);
  const nTrain = o.docs - nTest;
  return {
    name: `synthetic (seed ${o.seed}): ${L} labels, ${nTrain} train / ${nTest} test documents, vocabulary ${vocab}`,
    vocab,
    numLabels: L,
    labelBags: bagsOf(descriptions),
    train: { docs: bagsOf(docs.slice(0, nTrain)), labels: labelSetsOf(docLabels.slice(0, nTrain)) },
    test: { docs: bagsOf(docs.slice(nTrain)), labels: labelSetsOf(docLabels.slice(nTrain)) },
  };
}

/** A data file that cannot be used; the CLI prints its message without a stack trace. */
export class DataError extends Error {
  override name = 'DataError';
}

interface XcFile {
  features: number;
  labels: number;
  split: Split;
}

/**
 * Reads one file of the Extreme Classification Repository's bag-of-words format:
 * a header `points features labels`, then one line per point, `l1,l2,... f:v f:v ...`
 * (labels may be empty; feature values are typically tf-idf weights).
 */
export function readXc(file: string): XcFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DataError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const bad = (line: number, what: string): never => {
    throw new DataError(`${file}:${line}: ${what}`);
  };
  const header = (lines[0] ?? '').trim().split(/\s+/);
  const nums = header.map(Number);
  if (header.length !== 3 || !nums.every((n) => Number.isSafeInteger(n) && n > 0))
    bad(1, `expected the header "points features labels" (three positive integers), got ${JSON.stringify(lines[0] ?? '')}`);
  const [points, features, numLabels] = nums;
  if (lines.length - 1 < points) bad(lines.length + 1, `the header promises ${points} points, the file ends after ${lines.length - 1}`);
  if (lines.length - 1 > points) bad(points + 2, `the header promises ${points} points; this line is one too many`);

  const ptr = new Int32Array(points + 1);
  const rowPtr = new Int32Array(points + 1);
  const tok: number[] = [];
  const val: number[] = [];
  const cols: number[] = [];
  for (let i = 0; i < points; i++) {
    const n = i + 2;
    const line = lines[i + 1].replace(/\r$/, '');
    const parts = line.split(' ');
    const first = parts[0];
    // A point with no labels starts with a space (first part empty).
    const labelSet = new Set<number>();
    let k = 0;
    if (first !== '' && !first.includes(':')) {
      for (const s of first.split(',')) {
        const l = Number(s);
        if (s === '' || !Number.isInteger(l) || l < 0 || l >= numLabels) bad(n, `label ${JSON.stringify(s)} is not an integer in [0, ${numLabels})`);
        if (labelSet.has(l)) bad(n, `label ${l} appears twice`);
        labelSet.add(l);
      }
      k = 1;
    } else if (first === '') k = 1;
    for (const l of [...labelSet].sort((a, b) => a - b)) cols.push(l);
    rowPtr[i + 1] = cols.length;
    for (; k < parts.length; k++) {
      const p = parts[k];
      if (p === '') continue;
      const c = p.indexOf(':');
      const f = Number(p.slice(0, c));
      const v = Number(p.slice(c + 1));
      if (c <= 0 || !Number.isInteger(f) || f < 0 || f >= features) bad(n, `expected "feature:value" with a feature in [0, ${features}), got ${JSON.stringify(p)}`);
      if (!Number.isFinite(v) || v < 0 || p.slice(c + 1).trim() === '') bad(n, `feature ${f} has value ${JSON.stringify(p.slice(c + 1))}, expected a finite number >= 0`);
      if (v > 0) {
        tok.push(f);
        val.push(v);
      }
    }
    ptr[i + 1] = tok.length;
  }
  return {
    features,
    labels: numLabels,
    split: { docs: { ptr, tok: Int32Array.from(tok), val: Float32Array.from(val) }, labels: { rowPtr, cols: Int32Array.from(cols) } },
  };
}

/**
 * A dataset from XC-format train and test files. The BoW format carries no label text, so each
 * label's "description" is one private token appended to the vocabulary: the shared encoder
 * then learns one free embedding per label, as a classifier would.
 */
export function readXcDataset(trainFile: string, testFile: string): Dataset {
  const tr = readXc(trainFile);
  const te = readXc(testFile);
  if (te.features !== tr.features || te.labels !== tr.labels)
    throw new DataError(`${testFile}:1: the header says ${te.features} features and ${te.labels} labels, but ${trainFile} has ${tr.features} and ${tr.labels}`);
  const L = tr.labels;
  const labelBags: Bags = {
    ptr: Int32Array.from({ length: L + 1 }, (_, i) => i),
    tok: Int32Array.from({ length: L }, (_, l) => tr.features + l),
    val: new Float32Array(L).fill(1),
  };
  return {
    name: `${trainFile} + ${testFile}: ${L} labels, ${rows(tr.split.docs)} train / ${rows(te.split.docs)} test points, ${tr.features} features`,
    vocab: tr.features + L,
    numLabels: L,
    labelBags,
    train: tr.split,
    test: te.split,
  };
}
