"""``vit train`` as a library, one module per concern.

* :mod:`~vit_core.training.config`: what a run takes (``TrainConfig``) and ``TrainError``;
* :mod:`~vit_core.training.build`: the registered model or trainer built from ``--set``/``--encoder``,
  the checks of those keys and the sample shape a configuration takes;
* :mod:`~vit_core.training.data`: the bundled, synthetic and folder datasets;
* :mod:`~vit_core.training.loop`: the loop itself (``train``: the run's steps in order);
* :mod:`~vit_core.training.batches`: a batch made ready for the model, the micro-batch loss and ``evaluate``;
* :mod:`~vit_core.training.layout`: ``--channels-last``;
* :mod:`~vit_core.training.checkpoint`: saving a run and resuming it;
* :mod:`~vit_core.training.distributed`: torchrun ranks, the device, CPU threads and the process group;
* :mod:`~vit_core.training.report`: metrics, the progress bar and the final figures.
"""
