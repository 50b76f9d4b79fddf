import { refMultiLabelSoftmax } from '../scripts/ops/multiLabelSoftmax.mjs';
import { fl } from './helpers';
import { describePositivesLoss } from './positivesLosses';

describePositivesLoss({ name: 'multiLabelSoftmax', fn: fl.multiLabelSoftmax, async: fl.multiLabelSoftmaxAsync, ref: refMultiLabelSoftmax });
