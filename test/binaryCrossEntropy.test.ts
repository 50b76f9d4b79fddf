import { refBinaryCrossEntropy } from './reference/binaryCrossEntropy.js';
import { fl } from './helpers';
import { describePositivesLoss } from './positivesLosses';

describePositivesLoss({ name: 'binaryCrossEntropy', fn: fl.binaryCrossEntropy, async: fl.binaryCrossEntropyAsync, ref: refBinaryCrossEntropy });
