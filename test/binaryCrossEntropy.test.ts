import { refBinaryCrossEntropy } from '../scripts/ops/binaryCrossEntropy.mjs';
import { fl } from './helpers';
import { describePositivesLoss } from './positivesLosses';

describePositivesLoss({ name: 'binaryCrossEntropy', fn: fl.binaryCrossEntropy, async: fl.binaryCrossEntropyAsync, ref: refBinaryCrossEntropy });
