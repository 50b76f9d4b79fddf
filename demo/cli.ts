#!/usr/bin/env node
/**
 * `npm run demo` / `npx fusedloss-demo`: trains a DEXML-style dual encoder for extreme
 * multi-label classification with a loss from fusedloss, and reports P@1/3/5.
 */
import * as fl from 'fusedloss';
import { DataError, readXcDataset, synthetic, type Dataset } from './data';
import { availableLosses, type LossEntry } from './losses';
import { popularity, train, type TrainOptions, type TrainResult } from './train';

/** A command-line mistake: printed with a hint, exit status 2. */
class UsageError extends Error {}

interface Flag {
  name: string;
  arg?: string;
  help: string;
  dflt?: string | number;
}

const FLAGS: Flag[] = [
  { name: 'loss', arg: 'NAME', help: 'the loss (see below; default decoupled)' },
  { name: 'compare', help: 'train once with every available loss and print a table' },
  { name: 'train', arg: 'FILE', help: 'training data in the XC repository BoW format (with --test)' },
  { name: 'test', arg: 'FILE', help: 'test data in the same format' },
  { name: 'epochs', arg: 'N', help: 'passes over the training documents', dflt: 3 },
  { name: 'batch', arg: 'N', help: 'documents per step (each scored against all labels)', dflt: 256 },
  { name: 'dim', arg: 'N', help: 'embedding dimension', dflt: 64 },
  { name: 'tau', arg: 'X', help: 'temperature: the loss sees cosine/τ', dflt: 0.05 },
  { name: 'lr', arg: 'X', help: 'Adam learning rate', dflt: 0.01 },
  { name: 'budget', arg: 'MiB', help: 'scratch each loss call may use for its chunks of scores', dflt: 128 },
  { name: 'labels', arg: 'N', help: 'synthetic data: number of labels', dflt: 4000 },
  { name: 'docs', arg: 'N', help: 'synthetic data: number of documents (a fifth held out)', dflt: 25000 },
  { name: 'seed', arg: 'N', help: 'seed of the synthetic data and the model', dflt: 1 },
  { name: 'device', arg: 'cpu|cuda', help: 'where the loss call runs (the encoder runs on the CPU)', dflt: 'cpu' },
  { name: 'help', help: 'this text' },
];

function usage(): string {
  const losses = availableLosses();
  const lines = [
    'Usage: fusedloss-demo [options]',
    '',
    'Trains a dual encoder (shared embedding-bag; scores = cosine(query, each label) / τ against',
    'all labels) for extreme multi-label classification with a loss from fusedloss that takes the',
    'embeddings (no batch × labels score matrix is ever held), then reports P@1/3/5 on the test',
    'split against a popularity baseline, and the peak memory. Without --train/--test it makes a',
    'seeded synthetic dataset.',
    '',
    'Options:',
    ...FLAGS.map((f) => `  --${f.name}${f.arg ? ' ' + f.arg : ''}`.padEnd(24) + f.help + (f.dflt !== undefined ? ` (default ${f.dflt})` : '')),
    '',
    'Losses in this build:',
    ...losses.map((e) => `  ${e.name.padEnd(10)} fusedloss.${e.fn}: ${e.what}`),
  ];
  return lines.join('\n');
}

type Parsed = Record<string, string | true>;

/** "; did you mean --epochs?" for a flag that starts like a known one (a typo or a stray dash). */
function suggestFlag(given: string): string {
  const stem = given.replace(/^-+/, '').split('=')[0].toLowerCase().slice(0, 3);
  const near = stem.length === 3 ? FLAGS.filter((f) => f.name.startsWith(stem)) : [];
  return near.length ? `; did you mean ${near.map((f) => `--${f.name}`).join(' or ')}?` : '';
}

function parse(argv: string[]): Parsed {
  const out: Parsed = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([a-z]+)(?:=(.*))?$/.exec(a);
    const flag = m && FLAGS.find((f) => f.name === m[1]);
    if (!flag) throw new UsageError(a.startsWith('-') ? `unknown option ${a}${suggestFlag(a)}` : `unexpected argument ${JSON.stringify(a)}`);
    if (!flag.arg) {
      if (m![2] !== undefined) throw new UsageError(`--${flag.name} takes no value`);
      out[flag.name] = true;
    } else {
      const v = m![2] ?? argv[++i];
      if (v === undefined || (m![2] === undefined && v.startsWith('--'))) throw new UsageError(`--${flag.name} needs a value (${flag.arg})`);
      out[flag.name] = v;
    }
  }
  return out;
}

function num(p: Parsed, name: string, integer: boolean): number {
  const flag = FLAGS.find((f) => f.name === name)!;
  const raw = p[name] ?? String(flag.dflt);
  const v = Number(raw);
  if (raw === '' || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v)))
    throw new UsageError(`--${name}: expected ${integer ? 'a positive integer' : 'a positive number'}, got ${JSON.stringify(raw)}`);
  return v;
}

const pct = (x: number) => (100 * x).toFixed(2).padStart(6);

function report(r: TrainResult, base: [number, number, number]) {
  const step = r.lossSeconds + r.encoderSeconds;
  console.log(`P@1 ${pct(r.precision[0])}   P@3 ${pct(r.precision[1])}   P@5 ${pct(r.precision[2])}   (%)`);
  console.log(`popularity baseline: P@1 ${pct(base[0])}   P@3 ${pct(base[1])}   P@5 ${pct(base[2])}`);
  console.log(
    `time per step: loss ${((100 * r.lossSeconds) / step).toFixed(1)}% (fusedloss: scores, loss, gradients), encoder ${((100 * r.encoderSeconds) / step).toFixed(1)}% ` +
      `(embedding-bag forward and backward, Adam in TypeScript); ${step.toFixed(1)} s of steps in all`,
  );
}

function table(results: TrainResult[], base: [number, number, number], losses: LossEntry[]) {
  const head = ['loss', 'P@1', 'P@3', 'P@5', 'last epoch loss', 'loss ms/step', 'encoder ms/step', 'train s'];
  const body = results.map((r) => [
    `${r.loss} (${losses.find((l) => l.name === r.loss)!.fn})`,
    pct(r.precision[0]),
    pct(r.precision[1]),
    pct(r.precision[2]),
    r.epochs[r.epochs.length - 1].loss.toFixed(4),
    ((1000 * r.lossSeconds) / r.steps).toFixed(1),
    ((1000 * r.encoderSeconds) / r.steps).toFixed(1),
    r.epochs.reduce((a, x) => a + x.seconds, 0).toFixed(1),
  ]);
  body.push(['popularity baseline', pct(base[0]), pct(base[1]), pct(base[2]), '', '', '', '']);
  const w = head.map((h, c) => Math.max(h.length, ...body.map((r) => r[c].length)));
  const fmt = (r: string[]) => '| ' + r.map((x, c) => (c === 0 ? x.padEnd(w[c]) : x.padStart(w[c]))).join(' | ') + ' |';
  console.log(fmt(head));
  console.log('|' + w.map((x, c) => '-'.repeat(x + 1) + (c === 0 ? '-' : ':')).join('|') + '|');
  for (const r of body) console.log(fmt(r));
}

function main(argv: string[]): void {
  const p = parse(argv);
  if (p.help) {
    console.log(usage());
    return;
  }
  const losses = availableLosses();
  const dflt = losses.find((e) => e.name === 'decoupled') ?? losses[0];
  const lossName = typeof p.loss === 'string' ? p.loss : dflt.name;
  const entry = losses.find((e) => e.name === lossName);
  if (!entry) throw new UsageError(`--loss: expected one of ${losses.map((e) => e.name).join(', ')}, got ${JSON.stringify(lossName)}`);
  if (p.compare && p.loss) throw new UsageError('--compare trains every loss; leave out --loss');
  const device = p.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw new UsageError(`--device: expected cpu or cuda, got ${JSON.stringify(device)}`);
  if (device === 'cuda' && !fl.backendInfo().cuda.available) {
    const notes = fl.backendInfo().loader.notes.join('; ');
    throw new UsageError(`--device cuda: CUDA is not available here${notes ? ` (${notes})` : ''}`);
  }
  if ((p.train === undefined) !== (p.test === undefined)) throw new UsageError('--train and --test go together');
  const o: TrainOptions = {
    epochs: num(p, 'epochs', true),
    batch: num(p, 'batch', true),
    dim: num(p, 'dim', true),
    tau: num(p, 'tau', false),
    lr: num(p, 'lr', false),
    seed: num(p, 'seed', true),
    device,
    memoryBudget: Math.round(num(p, 'budget', false) * 2 ** 20),
    progress: process.stderr,
  };
  let ds: Dataset;
  if (typeof p.train === 'string' && typeof p.test === 'string') ds = readXcDataset(p.train, p.test);
  else ds = synthetic({ seed: o.seed, labels: num(p, 'labels', true), docs: num(p, 'docs', true), testFraction: 0.2 });
  const info = fl.backendInfo();
  console.log(`data: ${ds.name}`);
  console.log(
    `model: shared embedding-bag encoder, cosine scores, dim ${o.dim}, τ ${o.tau}, Adam lr ${o.lr}, batch ${o.batch} × all ${ds.numLabels} labels; ` +
      `fusedloss on ${device} (${device === 'cpu' ? `${info.cpu.threads} threads, ${info.cpu.simd}` : info.cuda.devices[0]?.name}), memoryBudget ${num(p, 'budget', false)} MiB`,
  );
  const base = popularity(ds);
  if (!p.compare) {
    console.log(`loss: ${entry.name} (fusedloss.${entry.fn}: ${entry.what})`);
    report(train(ds, entry, o), base);
    peakMemory();
    return;
  }
  const results: TrainResult[] = [];
  for (const e of losses) {
    console.log(`\nloss: ${e.name} (fusedloss.${e.fn}: ${e.what})`);
    const r = train(ds, e, o);
    report(r, base);
    results.push(r);
  }
  console.log('');
  table(results, base, losses);
  peakMemory();
}

/** The process's peak resident memory so far (maxRSS is in KiB). */
function peakMemory(): void {
  console.log(`peak memory: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB resident (maxRSS)`);
}

/** Runs the demo with `argv` (without node and the script); returns the exit status. */
export function run(argv: string[]): number {
  try {
    main(argv);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`fusedloss-demo: ${e.message}\nRun with --help for the options.`);
      return 2;
    }
    if (e instanceof DataError || e instanceof fl.FusedLossError) {
      console.error(`fusedloss-demo: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (require.main === module) process.exitCode = run(process.argv.slice(2));
