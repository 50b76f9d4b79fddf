import { refMultiLabelSoftmax } from './reference/multiLabelSoftmax.js';
import { fl } from './helpers';
import { describePositivesLoss } from './positivesLosses';

describePositivesLoss({ name: 'multiLabelSoftmax', fn: fl.multiLabelSoftmax, async: fl.multiLabelSoftmaxAsync, ref: refMultiLabelSoftmax });
