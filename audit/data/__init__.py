"""Evaluation images: detect a data source, sample it stratified by class, and decode it lazily in batches.

``open_data(spec, samples=..., seed=..., framing=...)`` returns an ``ImageSet``, whose ``batches`` yield
``Batch``es of float images in [0, 1]. The package, by what each module does:

- ``formats``: the table of formats (``FORMATS``: name, how it is detected, how it is read), walked in order by
  ``open_data``; ``NAMED`` holds the sources named by a word (``demo``).
- one module per format, each with ``detect(path)`` and ``read(...) -> Source``: ``npz`` (an .npz with ``x`` and
  ``y``), ``cifar`` (CIFAR-10/100 python batches), ``idx`` (MNIST-style IDX files, .gz too), ``folders``
  (ImageFolder: ``DIR/<class>/<images>``); ``demo`` reads the shipped demo images.
- ``source``: what a reader returns (``Source``: all labels plus ``read(i)`` decoding sample ``i``), and
  ``Unreadable`` for one sample that cannot be decoded.
- ``bounded`` and ``pickles``: reading untrusted files within a memory allowance set by each file's size, and
  the restricted unpickler CIFAR batches are loaded with (a pickle never names an arbitrary callable).
- ``sampling``: which samples are audited (``--samples``), evenly per class.
- ``images``: arrays to tensors, the ``--resize``/``--crop`` framing (``Framing``), resizing and channels.
- ``imageset``: ``ImageSet`` and ``Batch``.
- ``labels``: class names (built-in label sets, files under ``audit/label_sets``, comma lists) and the match of a
  data set's classes to a model's.

A new format is one module here and one row in ``formats.FORMATS``.
"""

from audit.data.demo import DEMO_FILE
from audit.data.formats import ACCEPTED, FORMATS, Format, open_data
from audit.data.images import Framing
from audit.data.imageset import Batch, ImageSet
from audit.data.source import Source, Unreadable

__all__ = ["ACCEPTED", "DEMO_FILE", "FORMATS", "Batch", "Format", "Framing", "ImageSet", "Source", "Unreadable",
           "open_data"]
