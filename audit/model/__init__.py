"""The user's model: loading it, building its network for a weights file, seeing it in [0,1] pixel space, and
checking it once before any attack.

- :mod:`audit.model.loading`: format sniffing (by content, never by extension), the loading policy (what needs
  ``--trust-model``) and the safe loaders; :func:`load_model` returns a :class:`LoadedModel`.
- :mod:`audit.model.arch`: ``--arch`` / ``--arch-kwargs``: building the network a state dict belongs to, and
  fitting the weights with a one-line account of any mismatch.
- :mod:`audit.model.huggingface`: a Hugging Face ``save_pretrained`` folder (the directory branch of
  :func:`~audit.model.loading.load_model`): the network transformers builds without remote code, its digest, and
  the class names and preprocessing its config files declare.
- :mod:`audit.model.timm_models`: ``--arch timm:NAME`` (``timm.create_model(NAME, pretrained=False)``) and the
  preprocessing a timm network's ``pretrained_cfg`` declares.
- :mod:`audit.model.weights_meta`: ``--weights-meta``: the preprocessing and class names of a torchvision
  weights enum member, without downloading its weights.
- :mod:`audit.model.declared`: :class:`~audit.model.declared.Declared`, what a model's source declares about
  its input (``LoadedModel.declared``).
- :mod:`audit.model.audited`: :class:`AuditedModel`, the network with normalization inside and one logits
  tensor out (the output picking of ``--output-key``), and :func:`eval_mode`.
- :mod:`audit.model.probing`: :func:`probe`, the check on a small real batch before any attack, and what a
  network says about its input (:func:`expected_channels`, :func:`declared_size`). The module is not called
  ``probe``: the function this package exports under that name would shadow it as an attribute of the package.
- :mod:`audit.model.torchvision_door`: the one door to torchvision, through which every import of user code
  goes.

The names below are the API the engine and the CLI use; everything else is imported from its module. A new
model format is a branch of :func:`~audit.model.loading.load_model` and its sniffing rule in ``loading.py``.
"""

from audit.model.audited import AuditedModel, eval_mode
from audit.model.loading import LoadedModel, load_model
from audit.model.probing import ProbeResult, declared_size, expected_channels, probe

__all__ = [
    "AuditedModel",
    "LoadedModel",
    "ProbeResult",
    "declared_size",
    "eval_mode",
    "expected_channels",
    "load_model",
    "probe",
]
