// The original experiment from TypeScript: LeNet on MNIST with digit 6 cut to 1/100 of its
// images, trained with cross-entropy and with focal loss (α = 100 on class 6, γ = 2).
//
//   npm run build:ts && node dist/examples/starve-six.js
import { loadMnist, parseImbalance, applyImbalance, Trainer } from '../ts/index';

async function main(): Promise<void> {
  const mnist = await loadMnist();
  const train = applyImbalance(mnist.train, parseImbalance('6=0.01', 10), /*seed=*/ 0);
  console.log(`training images of 6: ${train.labels.filter((y) => y === 6).length}`);

  for (const loss of ['ce', 'focal'] as const) {
    const trainer = await Trainer.create({
      model: 'lenet',
      classNames: train.classNames,
      loss,
      alpha: loss === 'focal' ? [1, 1, 1, 1, 1, 1, 100, 1, 1, 1] : undefined,
      gamma: 2,
    });
    await trainer.setData({ train, test: mnist.test });
    for await (const r of trainer.epochs(5)) {
      console.log(
        `${loss} epoch ${r.epoch}: loss ${r.loss.toFixed(4)}, test acc ${r.testAcc?.toFixed(3)}`,
      );
    }
    const evaluation = await trainer.evaluate();
    console.log(`${loss}: accuracy on 6s ${evaluation.perClass[6].recall.toFixed(3)}`);
    trainer.dispose();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
