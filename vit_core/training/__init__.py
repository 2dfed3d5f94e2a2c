"""``vit train`` as a library, one module per concern.

* :mod:`~vit_core.training.config`: what a run takes (``TrainConfig``) and ``TrainError``;
* :mod:`~vit_core.training.build`: the registered model or trainer built from ``--set``/``--encoder``,
  the checks of those keys and the sample shape a configuration takes;
* :mod:`~vit_core.training.data`: the bundled, synthetic and folder datasets;
* :mod:`~vit_core.training.loop`: the loop itself (``train``, ``evaluate``, the schedule, the batches);
* :mod:`~vit_core.training.checkpoint`: saving a run and resuming it;
* :mod:`~vit_core.training.distributed`: torchrun ranks, the device, CPU threads and the process group;
* :mod:`~vit_core.training.report`: metrics, the progress bar and the final figures.
"""
