import { refDecoupledSoftmax } from '../scripts/ops/decoupledSoftmax.mjs';
import { fl } from './helpers';
import { describePositivesLoss } from './positivesLosses';

describePositivesLoss({ name: 'decoupledSoftmax', fn: fl.decoupledSoftmax, async: fl.decoupledSoftmaxAsync, ref: refDecoupledSoftmax });
