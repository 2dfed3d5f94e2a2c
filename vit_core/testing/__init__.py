"""Conformance kit: the checks every registered model, trainer and backend must pass, first- or third-party.

A plugin's own test suite runs them on each of its models::

    from vit_core.testing import check_model, parametrize_models

    @parametrize_models(plugin="my-plugin")
    def test_conformance(model_name):
        check_model(model_name)

or all at once with ``check_plugin("my-plugin")`` (``export=True`` in either adds the export check).
Each failed check raises a :class:`ConformanceError` (an ``AssertionError``) whose message names the
model and the check.  Each kind has its profile (:data:`PROFILES`); the checks of a model, in order
(see :data:`CHECKS`):

``metadata``     the ModelInfo is complete (citation and example included), its target imports, its
                 default configuration and every preset's only use arguments of the constructor, and
                 its components (and a backend's ``plugs_into``) name registered models;
``listing``      the model is reachable through ``list_models`` and ``create_model``;
``declarations``  what the model declares on ``VisionModel`` holds: ``parameters_outside_forward``
                 prefixes name parameters, ``class_attention_trunk`` names a submodule holding
                 recordable attention, ``token_attention`` is a bool, ``attention_branches`` a positive
                 int dividing the recorded layers, and the head's output does not change with the tokens
                 after the ``head_reads_leading_tokens()`` it declares (before
                 ``forward``, which a wrong declaration changes);
``forward``      the default configuration gives ``(batch, num_classes)`` on ``info.example_input``;
``interface``    ``forward == forward_head(forward_features)``, ``pre_logits`` gives
                 ``(batch, num_features)``, ``reset_classifier`` changes the output width;
``batch-independence``  in eval mode each example's output does not depend on the others in its
                 batch: ``model(x)[:1]`` equals ``model(x[:1])`` within ``1e-5``;
``intermediates``  ``feature_info`` describes each intermediate of ``forward_intermediates``; the final
                 features it returns, and its last intermediate with ``norm=True``, equal
                 ``forward_features(x)``; ``intermediates_only`` with ``indices=1`` gives one;
``encoder-protocol``  for models exposing the encoder protocol (``tokenize``, ``add_positions``,
                 ``prepend_prefix``, ``encode``, ...): the steps compose to ``forward_features``;
``gradients``    a backward pass of the output reaches every trainable parameter (but those whose names
                 start with one of the model's ``parameters_outside_forward`` prefixes: parameters a
                 trainer uses through another method, e.g. a distillation token);
``bad-input``    wrong channels and wrong rank raise ``ValueError``/``TypeError`` whose message names the
                 input argument or the received shape, not a bare shape error;
``overrides``    ``create_model(name, num_classes=...)`` changes the output width;
``save-load``    ``vit_core.save_model`` then ``vit_core.load_model`` gives bit-identical outputs.

On request (``check_model(name, export=True)``, :data:`OPTIONAL_CHECKS`; models and backends):
``export``       ``torch.export.export`` and ``torch.onnx.export`` with a dynamic batch axis; on another batch
                 size the exported program matches eager within ``1e-5`` and onnxruntime within ``1e-4``;
                 a model that does not export fails naming the stage and the blocking operator
                 (needs ``pip install 'vit-core[export]'``).

A trainer (:data:`TRAINER_CHECKS`): ``metadata``, ``listing``; ``loss``: built from its default
configuration (the kit builds its components), called on a batch (``trainer(images)``, or
``trainer(images, labels)`` with ``takes_labels``) it returns a finite scalar; ``gradients``: the
backward pass reaches every trained component (its patch embedding too, when it has one) and every
trainable parameter of the trainer's own, and a trainer declaring ``update_moving_average`` (the
``vit_core.models.base.MovingAverageTrainer`` protocol) then runs it.  A backend (:data:`BACKEND_CHECKS`): ``metadata``,
``listing``; ``shape``: ``(batch, tokens, dim)`` in, the same shape out, finite; ``gradients``;
``bad-input``: a wrong ``dim`` and a wrong rank raise ``ValueError``/``TypeError`` naming ``dim`` or the
shape; ``plugs-into``: ``plugs_into``'s model built with ``transformer=`` the backend classifies its
example input.  Presets are not built (they are large): ``metadata`` checks their configurations.

The kit imports torch (it builds models); pytest is imported only by :func:`parametrize_models`.
Its modules, by kind of check: :mod:`~vit_core.testing.subject` (the entry under test, the error,
shared helpers), :mod:`~vit_core.testing.metadata`, :mod:`~vit_core.testing.models`,
:mod:`~vit_core.testing.declarations`, :mod:`~vit_core.testing.features` (intermediates, encoder
protocol), :mod:`~vit_core.testing.saving` (save-load, export), :mod:`~vit_core.testing.trainers`,
:mod:`~vit_core.testing.backends`, :mod:`~vit_core.testing.profiles` (the check tables) and
:mod:`~vit_core.testing.runner` (running and parametrizing).
"""

from vit_core.testing.backends import check_backend_input, check_plugs_into, check_shape
from vit_core.testing.declarations import check_declarations
from vit_core.testing.features import check_encoder_protocol, check_intermediates
from vit_core.testing.metadata import DESCRIBED, IMAGE_SIZE_NAMES, INPUT_ROLES, check_listing, check_metadata
from vit_core.testing.models import (
    BATCH_TOLERANCE,
    INTERFACE,
    check_bad_input,
    check_batch_independence,
    check_forward,
    check_gradients,
    check_interface,
    check_overrides,
)
from vit_core.testing.profiles import BACKEND_CHECKS, CHECKS, OPTIONAL_CHECKS, PROFILES, TRAINER_CHECKS, Check
from vit_core.testing.runner import check_model, check_plugin, model_names, parametrize_models
from vit_core.testing.saving import check_export_model, check_save_load
from vit_core.testing.subject import GRADIENT_PASSES, ConformanceError, Subject
from vit_core.testing.trainers import check_loss, check_trainer_gradients

__all__ = [
    "BACKEND_CHECKS",
    "BATCH_TOLERANCE",
    "CHECKS",
    "DESCRIBED",
    "GRADIENT_PASSES",
    "IMAGE_SIZE_NAMES",
    "INPUT_ROLES",
    "INTERFACE",
    "OPTIONAL_CHECKS",
    "PROFILES",
    "TRAINER_CHECKS",
    "Check",
    "ConformanceError",
    "Subject",
    "check_backend_input",
    "check_bad_input",
    "check_batch_independence",
    "check_declarations",
    "check_encoder_protocol",
    "check_export_model",
    "check_forward",
    "check_gradients",
    "check_interface",
    "check_intermediates",
    "check_listing",
    "check_loss",
    "check_metadata",
    "check_model",
    "check_overrides",
    "check_plugin",
    "check_plugs_into",
    "check_save_load",
    "check_shape",
    "check_trainer_gradients",
    "model_names",
    "parametrize_models",
]
